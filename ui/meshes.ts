/**
 * The joined meshes, shared by the header and the status screen: first from
 * the server-rendered props, then refreshed by polling `GET /api/meshes`
 * (a handful of rows, one per joined mesh).
 */
import { signal } from "@preact/signals";
import type { MeshSummary } from "./api_types.ts";
import { callApi } from "./api_client.ts";
import { AGENT_PATHS } from "@ztm/shared/agent_paths";

/** The joined meshes, as last seen. */
export const meshes = signal<MeshSummary[]>([]);
/** The last failure to read them (e.g. the session ended). */
export const meshesError = signal<string | undefined>(undefined);
/** False until the meshes are known (a page served without them loads them first). */
export const meshesLoaded = signal(true);

/** Reads the meshes again now. */
export async function refreshMeshes(): Promise<void> {
  const res = await callApi<MeshSummary[]>("GET", AGENT_PATHS.meshes);
  if (res.ok) {
    meshes.value = res.data;
    meshesLoaded.value = true;
    meshesError.value = undefined;
  } else {
    meshesError.value = res.message;
  }
}
