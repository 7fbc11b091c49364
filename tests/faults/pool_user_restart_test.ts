/**
 * A port mapping made while nobody offers its service fixes its pool's user
 * at its first connection. That user is stored with the mapping, so after
 * an agent restart another member who publishes the same name — while the
 * real provider is away — still gets none of the mapping's connections.
 */
import assert from "node:assert/strict";
import { api, type ApiBody, eventually, Harness } from "../fixtures/harness.ts";
import {
  addService,
  endpointPath,
  MESH,
  type MeshAgent,
  restartJoinedAgent,
  startMeshOf,
} from "../fixtures/mesh_fixture.ts";
import {
  assertRefused,
  echoRoundTrip,
  freePort,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

/** The stored mapping on `port` as `agent`'s API lists it. */
async function mappingOn(agent: MeshAgent, port: number): Promise<ApiBody> {
  const res = await api(agent.url, "GET", endpointPath(agent.endpointId, "ports"));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.find((m: ApiBody) => m.port === port);
}

Deno.test("a mapping's pool user fixed at first use survives an agent restart, so another member's same-named service gets none of its connections", async () => {
  await using h = new Harness();
  await using bobEcho = await startEchoServer();
  await using malloryEcho = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "mallory"]);
  const { alice, bob, mallory } = m.agents;

  // Mapped before anyone offers tcp/db: the pool's user is not known yet.
  const port = await freePort();
  const made = await api(
    alice.url,
    "POST",
    endpointPath(alice.endpointId, `ports/127.0.0.1/tcp/${port}`),
    { target: { service: "db" } },
  );
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.equal(made.body.target.user, undefined);

  // bob offers it; alice's first connection fixes the pool to bob.
  await addService(bob, "db", bobEcho.port, ["alice"]);
  await eventually(() => echoRoundTrip(port, 1024).then(() => true), 15_000, "alice reaches bob");

  // bob's provider goes away (after the hub's purge nothing of his is listed), alice restarts.
  const gone = await api(bob.url, "DELETE", endpointPath(bob.endpointId, "services/tcp/db"));
  assert.equal(gone.status, 200, JSON.stringify(gone.body));
  await bob.proc.stop();
  await restartJoinedAgent(h, alice);

  // mallory publishes the same name for alice.
  await addService(mallory, "db", malloryEcho.port, ["alice"]);
  await eventually(
    async () => {
      const res = await api(alice.url, "GET", `/api/meshes/${MESH}/services?q=db`);
      return res.body.items?.some((s: ApiBody) => s.user === "mallory");
    },
    15_000,
    "mallory's db listed",
  );
  for (let i = 0; i < 3; i++) {
    await assertRefused(port, malloryEcho, `connection ${i + 1} through alice's mapping`);
  }
  assert.equal(malloryEcho.accepted, 0);

  // The fixed user is stored with the mapping and shows in its listing.
  assert.equal((await mappingOn(alice, port)).target.user, "bob");
});
