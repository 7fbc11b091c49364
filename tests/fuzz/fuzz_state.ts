/**
 * The mesh fuzzer's state check: what a run must not change unasked (the CA's
 * certificates; alice's meshes, services, port mappings and policy; her
 * endpoint at the hub), read before and after, and the changes no request
 * answered 2xx explains.
 */
import { HUB_PATHS } from "@ztm/shared/protocol";
import { api } from "../fixtures/harness.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import { MESH } from "../fixtures/mesh_fixture.ts";
import type { FuzzMesh, Write } from "./fuzz_routes.ts";

/** What the fuzz must not change unasked: CA certificates, alice's meshes, services, ports, policy, and her endpoint at the hub. */
export interface MeshState {
  certificates: Map<string, { name: string; revoked: boolean }>;
  meshes: string[];
  services: Map<string, string>;
  ports: Map<string, string>;
  policy: string;
  aliceAtHub: string;
}

export async function snapshot(m: FuzzMesh): Promise<MeshState> {
  const certs = await (await fetch(`${m.ca.url}/api/certificates`)).json();
  const get = async (path: string) => {
    const res = await api(m.alice.url, "GET", path);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const epBase = `/api/meshes/${MESH}/endpoints/${m.alice.endpointId}`;
  // What is stored, not its live `state` (connection counts and errors change with traffic).
  const byKey = (items: Record<string, unknown>[], key: (x: Record<string, unknown>) => string) =>
    new Map(items.map((x) => [key(x), JSON.stringify({ ...x, state: undefined })]));
  // A fresh session: the fuzzed one must not be what the check depends on.
  await using probe = HubClient.connect(m.hub.port, userTls(m.bob));
  const aliceAtHub = await probe.request("GET", HUB_PATHS.endpoint(m.alice.endpointId));
  const hubRecord = aliceAtHub.status === 200 ? JSON.parse(aliceAtHub.text) : aliceAtHub;
  return {
    certificates: new Map(
      certs.map((c: { serial: string; name: string; revoked: boolean }) => [c.serial, c]),
    ),
    meshes: (await get("/api/meshes")).map((x: { name: string }) => x.name).sort(),
    services: byKey(await get(`${epBase}/services`), (s) => `services/${s.proto}/${s.name}`),
    ports: byKey(await get(`${epBase}/ports`), (p) => `ports/${p.ip}/${p.proto}/${p.port}`),
    policy: JSON.stringify(await get(`/api/meshes/${MESH}/policy`)),
    aliceAtHub: JSON.stringify({ user: hubRecord.user, online: hubRecord.online }),
  };
}

/** Changes between two snapshots that no 2xx request in `writes` explains. */
export function unexplained(before: MeshState, after: MeshState, writes: Write[]): string[] {
  const problems: string[] = [];
  const wrote = (pred: (w: Write) => boolean) => writes.some(pred);
  for (const [serial, c] of after.certificates) {
    const was = before.certificates.get(serial);
    const lower = c.name.toLowerCase();
    if (!was) {
      const issued = wrote((w) =>
        (w.startsWith("ca POST /api/certificates/") &&
          w.slice("ca POST /api/certificates/".length).toLowerCase() === lower) ||
        w === "ca POST /api/hub-certificates"
      );
      if (!issued) problems.push(`certificate ${serial} (${c.name}) appeared`);
    } else if (c.revoked && !was.revoked) {
      const revoked = wrote((w) =>
        w.startsWith("ca DELETE /api/certificates/") &&
        w.slice("ca DELETE /api/certificates/".length).toLowerCase() === lower
      );
      if (!revoked) problems.push(`certificate ${serial} (${c.name}) was revoked`);
    }
  }
  for (const serial of before.certificates.keys()) {
    if (!after.certificates.has(serial)) problems.push(`certificate ${serial} vanished`);
  }
  const meshChanges = [
    ...after.meshes.filter((n) => !before.meshes.includes(n)),
    ...before.meshes.filter((n) => !after.meshes.includes(n)),
  ];
  for (const name of meshChanges) {
    if (!wrote((w) => w.startsWith("agent ") && w.endsWith(` /api/meshes/${name}`))) {
      problems.push(`mesh ${name} joined or left`);
    }
  }
  for (
    const [what, b, a] of [["service", before.services, after.services], [
      "port",
      before.ports,
      after.ports,
    ]] as const
  ) {
    for (const key of new Set([...b.keys(), ...a.keys()])) {
      if (b.get(key) === a.get(key)) continue;
      if (!wrote((w) => w.endsWith(`/${key}`) || w.endsWith(` ${key}`))) {
        problems.push(`${what} ${key} changed: ${b.get(key)} -> ${a.get(key)}`);
      }
    }
  }
  if (before.policy !== after.policy && !wrote((w) => w.includes(`/api/meshes/${MESH}/policy`))) {
    problems.push(`policy changed: ${before.policy} -> ${after.policy}`);
  }
  if (before.aliceAtHub !== after.aliceAtHub) {
    problems.push(`alice's endpoint at the hub: ${before.aliceAtHub} -> ${after.aliceAtHub}`);
  }
  return problems;
}
