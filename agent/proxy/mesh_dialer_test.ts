import assert from "node:assert/strict";
import { Forbidden, ZtmError } from "@ztm/shared/errors";
import type { MeshService } from "@ztm/shared/protocol";
import type { Leg } from "@ztm/shared/splice";
import { memoryLog } from "./_fixture.ts";
import { MeshDialer, type ProxyTunnels, type TunnelTarget } from "./mesh_dialer.ts";

const leg: Leg = {
  read: () => Promise.resolve(null),
  write: () => Promise.resolve(),
  closeWrite: () => Promise.resolve(),
  abort: () => {},
  close: () => {},
};

function fakeMesh(listing: MeshService[], fail: Record<string, ZtmError> = {}) {
  const opened: TunnelTarget[] = [];
  let listed = 0;
  const tunnels: ProxyTunnels = {
    services: () => {
      listed++;
      return Promise.resolve(listing);
    },
    openTunnel: (t) => {
      opened.push(t);
      const err = fail[t.endpoint];
      return err ? Promise.reject(err) : Promise.resolve({ leg, release: () => {} });
    },
  };
  return { tunnels, opened, listed: () => listed };
}

const web: MeshService = {
  proto: "tcp",
  name: "web",
  user: "bob",
  providers: [
    { endpoint: "ep-1", name: "one", online: true, users: [] },
    { endpoint: "ep-2", name: "two", online: true, users: [] },
  ],
};

Deno.test("the dialer rotates new tunnels over the providers and reuses a fresh listing", async () => {
  const m = fakeMesh([web]);
  const d = new MeshDialer({ mesh: "t", tunnels: () => m.tunnels, log: memoryLog().log });
  for (let i = 0; i < 4; i++) await d.dial("web.mesh");
  assert.deepEqual(m.opened.map((t) => t.endpoint), ["ep-1", "ep-2", "ep-1", "ep-2"]);
  assert.deepEqual(m.opened[0], { proto: "tcp", service: "web", endpoint: "ep-1", user: "bob" });
  assert.equal(m.listed(), 1);
  await d.dial("web.two.mesh");
  assert.equal(m.opened.at(-1)?.endpoint, "ep-2");
});

Deno.test("a provider that fails is skipped; a refusal of the caller is not retried elsewhere", async () => {
  const failing = fakeMesh([web], { "ep-1": new ZtmError(502, "target_unreachable", "down") });
  const d = new MeshDialer({ mesh: "t", tunnels: () => failing.tunnels, log: memoryLog().log });
  const t = await d.dial("web.mesh");
  assert.equal(t.target.endpoint, "ep-2");
  const denying = fakeMesh([web], {
    "ep-1": new Forbidden("access_denied", "no"),
    "ep-2": new Forbidden("access_denied", "no"),
  });
  const d2 = new MeshDialer({ mesh: "t", tunnels: () => denying.tunnels, log: memoryLog().log });
  await assert.rejects(d2.dial("web.mesh"), (e: ZtmError) => e.status === 403);
  assert.equal(denying.opened.length, 1);
});

Deno.test("names outside the mesh and a stopped mesh are refused before any tunnel", async () => {
  const m = fakeMesh([web]);
  const d = new MeshDialer({ mesh: "t", tunnels: () => m.tunnels, log: memoryLog().log });
  await assert.rejects(
    d.dial("intranet.office.lan"),
    (e: ZtmError) => e.code === "not_a_mesh_name",
  );
  await assert.rejects(d.dial("nope.mesh"), (e: ZtmError) => e.code === "unknown_service");
  const stopped = new MeshDialer({ mesh: "t", tunnels: () => null, log: memoryLog().log });
  await assert.rejects(stopped.dial("web.mesh"), (e: ZtmError) => e.code === "mesh_not_running");
  assert.equal(m.opened.length, 0);
});
