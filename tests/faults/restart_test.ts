/**
 * Restarts with real processes: an agent restarted on its database brings
 * back its meshes, services and port mappings; a hub restarted on its data
 * dir and port is rejoined by every agent without user action, also while the
 * CA is down (cached identity and CRL, revocations still enforced); and the
 * hub survives a session that carried hundreds of streams being closed.
 */
import assert from "node:assert/strict";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { type ClientTls, HubClient, userTls } from "../fixtures/hub_client.ts";
import { exchangeConn, finish, hubStatus } from "../fixtures/data_fixture.ts";
import { openE2eTunnel } from "../fixtures/e2e_caller.ts";
import {
  addPortMapping,
  addService,
  endpointSeenBy,
  MESH,
  type MeshAgent,
  meshStatus,
  startMeshOf,
  type TestMesh,
  waitConnected,
  withoutState,
} from "../fixtures/mesh_fixture.ts";
import {
  echoRoundTrip,
  equalBytes,
  freePort,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

/** Waits until a connection through `port` echoes (the mapping works end to end). */
async function mappingWorks(port: number, what: string): Promise<void> {
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, what);
}

/** alice and bob; bob offers `echo` (open to alice) on a real echo server; alice maps a port to it. */
async function meshWithMapping(
  h: Harness,
  targetPort: number,
): Promise<TestMesh & { port: number }> {
  const m = await startMeshOf(h, ["alice", "bob"]);
  await addService(m.agents.bob, "echo", targetPort, ["alice"]);
  const port = await freePort();
  await addPortMapping(m.agents.alice, port, "echo");
  await mappingWorks(port, "data through alice's mapping before the restart");
  return { ...m, port };
}

/** Stops `agent`'s process and starts a new one on the same database; waits until connected. */
async function restartAgent(h: Harness, agent: MeshAgent): Promise<void> {
  const status = await agent.proc.stop();
  assert.equal(status.code, 0, `agent stopped with ${status.code}:\n${agent.proc.tail()}`);
  agent.proc = await h.startAgent({ dir: agent.proc.dir, name: agent.proc.name });
  agent.url = agent.proc.url;
  await waitConnected(agent);
}

/**
 * Stops the hub, runs `whileDown`, and starts a new hub on the same data dir
 * and port (a later `--listen` overrides the harness's port 0).
 */
async function restartHub(
  h: Harness,
  m: TestMesh,
  whileDown: () => Promise<void> = () => Promise.resolve(),
): Promise<TestMesh["hub"]> {
  const port = m.hub.port;
  const status = await m.hub.stop();
  assert.equal(status.code, 0, `hub stopped with ${status.code}:\n${m.hub.tail()}`);
  await whileDown();
  const hub = await h.startHub(m.ca, { dir: m.hub.dir, args: [`--listen=127.0.0.1:${port}`] });
  assert.equal(hub.port, port);
  // It came back with the identity it had: no new key, no new certificate.
  assert.ok(
    !hub.logs.some((l) => l.msg === "hub key created" || l.msg === "hub certificate issued"),
  );
  return hub;
}

Deno.test("a restarted agent brings back its mesh, services and port mappings", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await meshWithMapping(h, target.port);
  const { alice, bob } = m.agents;

  await restartAgent(h, bob);
  await restartAgent(h, alice);

  const meshes = await api(alice.url, "GET", "/api/meshes");
  assert.equal(meshes.status, 200);
  assert.deepEqual(meshes.body.map((x: { name: string }) => x.name), [MESH]);
  assert.equal((await meshStatus(alice)).endpoint.id, alice.endpointId);
  assert.equal((await meshStatus(bob)).endpoint.id, bob.endpointId);

  const services = await api(
    bob.url,
    "GET",
    `/api/meshes/${MESH}/endpoints/${bob.endpointId}/services`,
  );
  assert.equal(services.status, 200, JSON.stringify(services.body));
  assert.deepEqual(services.body.map(withoutState), [
    {
      proto: "tcp",
      name: "echo",
      host: "127.0.0.1",
      port: target.port,
      users: ["alice"],
      strict: false,
    },
  ]);
  const ports = await api(
    alice.url,
    "GET",
    `/api/meshes/${MESH}/endpoints/${alice.endpointId}/ports`,
  );
  assert.equal(ports.status, 200, JSON.stringify(ports.body));
  assert.deepEqual(ports.body.map(withoutState), [
    { ip: "127.0.0.1", proto: "tcp", port: m.port, target: { service: "echo", user: "bob" } },
  ]);
  // The hub sees bob's service again, published by the restarted agent.
  const seen = await endpointSeenBy(alice, bob.endpointId);
  assert.equal(seen?.online, true);
  assert.deepEqual(seen?.services, [{ proto: "tcp", name: "echo", users: ["alice"] }]);

  const before = target.accepted;
  await mappingWorks(m.port, "data through alice's mapping after both agents restarted");
  assert.ok(target.accepted > before);
});

Deno.test("agents reconnect to a restarted hub by themselves and mappings work again", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await meshWithMapping(h, target.port);
  const { alice, bob } = m.agents;

  await restartHub(h, m, async () => {
    await eventually(
      async () => !(await meshStatus(alice)).status.connected,
      10_000,
      "alice sees the hub gone",
    );
    await eventually(
      async () => !(await meshStatus(bob)).status.connected,
      10_000,
      "bob sees the hub gone",
    );
  });

  await waitConnected(alice);
  await waitConnected(bob);
  const seen = await endpointSeenBy(alice, bob.endpointId);
  assert.equal(seen?.online, true);
  assert.deepEqual(seen?.services, [{ proto: "tcp", name: "echo", users: ["alice"] }]);
  await mappingWorks(m.port, "data through alice's mapping after the hub restarted");
});

Deno.test("a hub restarted while the CA is down serves from its cache and keeps revoked certificates out", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await meshWithMapping(h, target.port);
  const { alice, bob } = m.agents;

  // carol is admitted, then revoked; the hub learns it while the CA is up.
  const carol = await issueUser(m.ca.url, "carol");
  const admitted = await statusWith(m.hub.port, userTls(carol));
  assert.equal(admitted.status, 200, admitted.text);
  const del = await fetch(`${m.ca.url}/api/certificates/carol`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());
  await eventually(
    async () => (await statusWith(m.hub.port, userTls(carol))).status === undefined,
    10_000,
    "the hub refuses carol",
  );

  const caStopped = await m.ca.stop();
  assert.equal(caStopped.code, 0);
  const hub = await restartHub(h, m);
  assert.ok(hub.logs.some((l) => l.msg === "ca unreachable, using the cached ca certificate"));

  await waitConnected(alice);
  await waitConnected(bob);
  await mappingWorks(m.port, "data through alice's mapping after a hub restart without the CA");

  // The cached CRL is in force: carol stays out, alice (positive control) gets in.
  const refused = await statusWith(hub.port, userTls(carol));
  assert.equal(refused.status, undefined, `carol got ${refused.status} ${refused.text}`);
  const ok = await statusWith(hub.port, userTls(alice.files));
  assert.equal(ok.status, 200, ok.text);
  const revocations = JSON.parse(ok.text).revocations;
  assert.equal(revocations.caReachable, false);
  assert.equal(typeof revocations.crlNumber, "number");
});

Deno.test("hub still answers after a session that carried hundreds of streams is closed", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await meshWithMapping(h, target.port);
  const { alice, bob } = m.agents;
  const STREAMS = 300;

  // 300 requests on one session, then a graceful close (GOAWAY).
  const requests = HubClient.connect(m.hub.port, userTls(alice.files));
  await inBatches(STREAMS, 50, async () => {
    const r = await requests.request("GET", "/api/status");
    assert.equal(r.status, 200, r.text ?? r.refused);
  });
  await requests.close();

  // 300 tunnels on one agent session (control stream first), each echoing and ended
  // gracefully, then the session is torn down without a goodbye.
  const tunnels = HubClient.connect(m.hub.port, userTls(alice.files));
  assert.equal((await tunnels.openControl("alice-many-streams", "many")).status, 200);
  const dataPort = (await hubStatus(tunnels)).dataPort;
  await inBatches(STREAMS, 20, async () => {
    const t = await openE2eTunnel({
      client: tunnels,
      files: alice.files,
      endpoint: "alice-many-streams",
      target: bob.endpointId,
      targetUser: "bob",
      service: "echo",
    }, dataPort);
    const data = randomBytes(1024);
    assert.ok(equalBytes(await exchangeConn(t, data), data));
    await finish(t);
  });
  tunnels.session.destroy();

  // The hub is alive and serves a new client; the agents' sessions are untouched.
  await using fresh = HubClient.connect(m.hub.port, userTls(bob.files));
  const status = await fresh.request("GET", "/api/status");
  assert.equal(status.status, 200, status.text ?? status.refused);
  assert.equal(m.hub.exited, false, m.hub.tail());
  assert.equal((await meshStatus(alice)).status.connected, true);
  assert.equal((await meshStatus(bob)).status.connected, true);
  await mappingWorks(m.port, "data through alice's mapping after the busy sessions closed");
  assert.equal(m.hub.exited, false, m.hub.tail());
});

/** `GET /api/status` on a fresh session with `tls`; closes the session. */
async function statusWith(port: number, tls: ClientTls) {
  await using client = HubClient.connect(port, tls);
  return await client.request("GET", "/api/status");
}

/** Runs `task` `total` times with at most `width` at once; rethrows the first failure. */
async function inBatches(total: number, width: number, task: () => Promise<void>): Promise<void> {
  for (let done = 0; done < total; done += width) {
    await Promise.all(Array.from({ length: Math.min(width, total - done) }, () => task()));
  }
}
