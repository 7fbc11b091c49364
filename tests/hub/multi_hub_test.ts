/**
 * Several hubs per mesh, with real processes: two hubs on one CA, agents
 * joined with both addresses hold a session with each; listings merge; a
 * tunnel rides a hub both sides are on; one hub killed with SIGKILL leaves
 * mappings working through the other, and the agents rejoin it when it is
 * back; a revoked user is cut on both hubs.
 */
import assert from "node:assert/strict";
import { api, type ApiBody, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import {
  addPortMapping,
  addService,
  hubStates,
  joinedOn,
  mapEcho,
  MESH,
  type MeshAgent,
  meshStatus,
} from "../fixtures/mesh_fixture.ts";
import { ztmOk } from "../fixtures/cli_helpers.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

/** Waits until every hub in `up` is connected and every hub in `down` is not, as `agent` says. */
async function waitHubs(agent: MeshAgent, up: string[], down: string[], what: string) {
  await eventually(
    async () => {
      const s = await hubStates(agent);
      return up.every((a) => s[a]?.connected === true) &&
        down.every((a) => s[a]?.connected === false);
    },
    30_000,
    what,
  );
}

/** A CA, hubs A and B (`both`: their addresses), and one agent per user joined on both. */
async function onTwoHubs(h: Harness, users: string[]) {
  const ca = await h.startCa();
  const hubA = await h.startHub(ca);
  const hubB = await h.startHub(ca);
  const both = [hubA.address, hubB.address];
  const files = await Promise.all(users.map((u) => issueUser(ca.url, u)));
  const agents: MeshAgent[] = [];
  for (const f of files) agents.push(await joinedOn(h, both, f));
  return { ca, hubA, hubB, both, agents };
}

async function endpointOnline(via: MeshAgent, id: string): Promise<boolean> {
  const res = await api(via.url, "GET", `/api/meshes/${MESH}/endpoints?limit=500`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.items.some((e: ApiBody) => e.id === id && e.online === true);
}

Deno.test("an agent holds every hub; a hub killed leaves mappings working; it is rejoined when back", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const { ca, hubA, hubB, both, agents: [alice, bob] } = await onTwoHubs(h, ["alice", "bob"]);

  // One session per hub, each with its own state; the mesh is connected.
  for (const agent of [alice, bob]) {
    await waitHubs(agent, both, [], `${agent.endpointName} on both hubs`);
    const s = await meshStatus(agent);
    assert.equal(s.status.connected, true);
    assert.equal(s.status.hubs.length, 2);
  }
  assert.ok(await endpointOnline(alice, bob.endpointId));

  const port = await mapEcho(alice, bob, echo.port);

  // The `ztm status` view shows each hub.
  const out = await ztmOk([
    "status",
    `--agent=127.0.0.1:${alice.proc.port}`,
    `--api-token-file=${alice.proc.database}.token`,
  ]);
  assert.match(out, new RegExp(`${MESH}: hub ${hubA.address}: up`));
  assert.match(out, new RegExp(`${MESH}: hub ${hubB.address}: up`));

  // Hub A dies: its sessions are shown down, the mesh stays connected, new connections work.
  const killedAt = performance.now();
  assert.equal((await hubA.kill()).signal, "SIGKILL");
  await waitHubs(alice, [hubB.address], [hubA.address], "alice sees hub A down");
  await waitHubs(bob, [hubB.address], [hubA.address], "bob sees hub A down");
  const s = await meshStatus(alice);
  assert.equal(s.status.connected, true);
  assert.ok((await hubStates(alice))[hubA.address].lastError);
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "mapping after kill");
  const working = performance.now();
  for (let i = 0; i < 10; i++) await echoRoundTrip(port);
  assert.ok(await endpointOnline(alice, bob.endpointId));
  console.log(`new connections worked ${Math.round(working - killedAt)} ms after hub A was killed`);

  // Hub A back on its port and data: both agents rejoin it by themselves.
  const hubPort = hubA.port;
  const hubA2 = await h.startHub(ca, {
    dir: hubA.dir,
    args: [`--listen=127.0.0.1:${hubPort}`],
  });
  await waitHubs(alice, both, [], "alice rejoins hub A");
  await waitHubs(bob, both, [], "bob rejoins hub A");

  // Now hub B dies: the mapping keeps working, through hub A again.
  assert.equal((await hubB.kill()).signal, "SIGKILL");
  await waitHubs(alice, [hubA.address], [hubB.address], "alice sees hub B down");
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "mapping via hub A");
  for (let i = 0; i < 10; i++) await echoRoundTrip(port);
  await hubA2.stop();
});

Deno.test("a tunnel goes through the hub both agents are on, and listings merge", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const ca = await h.startCa();
  const hubA = await h.startHub(ca);
  const hubB = await h.startHub(ca);
  const [aliceFiles, bobFiles, carolFiles] = await Promise.all(
    ["alice", "bob", "carol"].map((u) => issueUser(ca.url, u)),
  );
  const alice = await joinedOn(h, [hubA.address, hubB.address], aliceFiles);
  // bob is on hub B only, carol on hub A only.
  const bob = await joinedOn(h, [hubB.address], bobFiles);
  const carol = await joinedOn(h, [hubA.address], carolFiles);
  await waitHubs(alice, [hubA.address, hubB.address], [], "alice on both hubs");

  // alice sees both, whichever hub she prefers.
  await eventually(
    async () =>
      (await endpointOnline(alice, bob.endpointId)) &&
      (await endpointOnline(alice, carol.endpointId)),
    10_000,
    "alice lists bob and carol online",
  );
  const one = await api(alice.url, "GET", `/api/meshes/${MESH}/endpoints/${bob.endpointId}`);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.equal(one.body.online, true);

  await addService(bob, "echo-b", echo.port, ["alice"]);
  await addService(carol, "echo-c", echo.port, ["alice"]);
  const portB = await freePort();
  const portC = await freePort();
  await addPortMapping(alice, portB, "echo-b");
  await addPortMapping(alice, portC, "echo-c");
  // Fresh pairs each time on both: the hub that does not see the provider answers 404,
  // and the other one carries the pair.
  for (let i = 0; i < 5; i++) {
    await eventually(() => echoRoundTrip(portB).then(() => true), 15_000, "mapping to bob");
    await eventually(() => echoRoundTrip(portC).then(() => true), 15_000, "mapping to carol");
  }
});

Deno.test("a revoked user is cut on both hubs", async () => {
  await using h = new Harness();
  const { ca, both, agents: [alice, carol] } = await onTwoHubs(h, ["alice", "carol"]);
  await waitHubs(carol, both, [], "carol on both hubs");
  await eventually(
    () => endpointOnline(alice, carol.endpointId),
    10_000,
    "carol online",
  );

  const del = await fetch(`${ca.url}/api/certificates/carol`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());
  await waitHubs(carol, [], both, "carol cut on both hubs");
  assert.equal((await meshStatus(carol)).status.connected, false);
  // alice (positive control) stays on both, and sees carol offline on every hub.
  await waitHubs(alice, both, [], "alice still on both hubs");
  await eventually(
    async () => !(await endpointOnline(alice, carol.endpointId)),
    10_000,
    "carol offline on every hub",
  );
});
