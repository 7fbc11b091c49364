/**
 * The fuzzer's state check can fail: every kind of change it watches is
 * reported unless a 2xx request it recorded explains it.
 */
import assert from "node:assert/strict";
import { type MeshState, unexplained } from "./fuzz_state.ts";

function state(): MeshState {
  return {
    certificates: new Map([["01", { name: "alice", revoked: false }]]),
    meshes: ["test"],
    services: new Map([["services/tcp/echo", '{"port":1}']]),
    ports: new Map(),
    policy: '{"remoteManagement":true}',
    aliceAtHub: '{"user":"alice","online":true}',
  };
}

Deno.test("the fuzz state check reports each unasked change and accepts the asked ones", () => {
  const before = state();
  const after = state();
  after.certificates.set("02", { name: "fz-1", revoked: false });
  after.certificates.set("01", { name: "alice", revoked: true });
  after.meshes.push("fz-mesh");
  after.services.set("services/tcp/echo", '{"port":2}');
  after.services.set("services/tcp/fz-3", '{"port":3}');
  after.ports.set("ports/127.0.0.1/tcp/80", "{}");
  after.policy = '{"remoteManagement":false}';
  after.aliceAtHub = '{"user":"alice","online":false}';

  const none = unexplained(before, after, []);
  for (
    const what of [
      /certificate 02 \(fz-1\) appeared/,
      /certificate 01 \(alice\) was revoked/,
      /mesh fz-mesh/,
      /service services\/tcp\/echo/,
      /service services\/tcp\/fz-3/,
      /port ports\/127\.0\.0\.1\/tcp\/80/,
      /policy changed/,
      /alice's endpoint/,
    ]
  ) {
    assert.ok(none.some((p) => what.test(p)), `${what} not reported: ${none.join("; ")}`);
  }

  const asked = unexplained(before, after, [
    "ca POST /api/certificates/fz-1",
    "ca DELETE /api/certificates/alice",
    "agent POST /api/meshes/fz-mesh",
    "agent POST /api/meshes/test/endpoints/e/services/tcp/echo",
    "hub POST services/tcp/fz-3",
    "agent POST /api/meshes/test/endpoints/e/ports/127.0.0.1/tcp/80",
    "agent PUT /api/meshes/test/policy",
  ]);
  assert.deepEqual(asked, [
    `alice's endpoint at the hub: ${before.aliceAtHub} -> ${after.aliceAtHub}`,
  ]);
});
