/**
 * `deno task start` (cli/start.ts): a CA, a hub and an agent in one process,
 * joined to a local mesh as root; a second run reuses the same state.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { api, type ApiBody, eventually, Harness } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";
import { startAllInOne } from "../fixtures/cli_helpers.ts";

/** The local mesh as the agent at `url` reports it, once its hub link is up (15 s at most). */
function localMeshUp(url: string, what: string): Promise<ApiBody> {
  return eventually(
    async () => {
      const res = await api(url, "GET", "/api/meshes/local");
      return res.body?.status?.connected ? res.body : undefined;
    },
    15_000,
    what,
  );
}

Deno.test("start runs a CA, a hub and an agent joined as root, and a second run reuses the state", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-start-");
  const hubPort = await freePort();
  const first = await startAllInOne(h, dir, { hubPort });
  const mesh = await localMeshUp(first.url, "the local mesh connects");
  assertEquals(mesh.user, "root");
  const endpoints = await api(first.url, "GET", "/api/meshes/local/endpoints");
  assertEquals(endpoints.body.items.length, 1);
  assert(endpoints.body.items[0].online);
  for (const f of ["ca.db", "agent.db", "root.key", "root.crt", "hub/hub.key"]) {
    assertEquals(Deno.statSync(join(dir, f)).mode! & 0o777, 0o600, `${f} is 0600`);
  }
  const rootCert = Deno.readTextFileSync(join(dir, "root.crt"));
  await first.proc.stop();

  const second = await startAllInOne(h, dir, { hubPort });
  const again = await localMeshUp(second.url, "the local mesh reconnects");
  assertEquals(again.endpoint.id, mesh.endpoint.id, "same endpoint after a restart");
  assertEquals(Deno.readTextFileSync(join(dir, "root.crt")), rootCert, "root was not issued again");
  assert(!second.proc.raw.some((l) => l.includes("start failed")), second.proc.tail());
});
