/**
 * Access control and load balancing with real processes (issue "Access
 * control and load balancing"): a service's `users` decide who gets through,
 * checked by the providing agent before it touches the target; `strict`
 * narrowing closes live connections; a mapping's pool is one user's
 * providers, fixed when the mapping is made, spread round-robin over the
 * online ones, skipping a provider that is down or whose target refuses.
 *
 * Every refusal is checked where it matters: the target counts the
 * connections it accepts, and that count must not move.
 */
import assert from "node:assert/strict";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { api, type ApiBody, eventually, Harness } from "../fixtures/harness.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import {
  addService,
  MESH,
  type MeshAgent,
  startJoinedAgent,
  startMeshOf,
  waitConnected,
} from "../fixtures/mesh_fixture.ts";
import {
  assertRefused,
  echoRoundTrip,
  freePort,
  IO_TIMEOUT_MS,
  openConnection,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

/** Maps a free port on `agent` to `target`; returns the port once the API said 201. */
async function mapPort(agent: MeshAgent, target: Record<string, string>): Promise<number> {
  const port = await freePort();
  const res = await mapOn(agent, port, target);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return port;
}

function mapOn(agent: MeshAgent, port: number, target: Record<string, string>) {
  return api(
    agent.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${agent.endpointId}/ports/127.0.0.1/tcp/${port}`,
    { target },
  );
}

/** Publishes (or replaces) `tcp/name` on `agent` with the given body fields. */
async function putService(agent: MeshAgent, name: string, body: ApiBody): Promise<void> {
  const res = await api(
    agent.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${agent.endpointId}/services/tcp/${name}`,
    { host: "127.0.0.1", ...body },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

/** Waits until a round trip through `port` works (the hub has the service by now). */
async function reachable(port: number, what: string): Promise<void> {
  await eventually(() => echoRoundTrip(port, 1024).then(() => true), 15_000, what);
}

Deno.test("a service's users decide who gets through; the provider refuses everyone else before the target", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;
  await addService(root, "web", echo.port, ["alice"]);

  const alicePort = await mapPort(alice, { service: "web" });
  await reachable(alicePort, "alice through her mapping to root's web");

  const bobPort = await mapPort(bob, { service: "web" });
  const fromLog = root.proc.logs.length;
  await assertRefused(bobPort, echo, "bob through his mapping");
  const refused = await root.proc.waitForLog(
    (l) => l.msg === "tunnel refused" && l.user === "bob",
    10_000,
    fromLog,
  );
  assert.equal(refused.status, 403);
  await bob.proc.waitForLog((l) => l.msg === "tunnel failed" && /403|may not/.test(`${l.err}`));

  // Bob's certificate in a hand-built client speaking the hub protocol: the same refusal.
  const accepted = echo.accepted;
  await using client = HubClient.connect(m.hub.port, userTls(bob.files));
  const control = await client.openControl("bob-hand", "bob-hand");
  assert.equal(control.status, 200, control.text || control.refused);
  control.stream.on("error", () => {});
  control.stream.on("data", () => {});
  // (the provider's pre-check on what the hub claims refuses before anything is dialled)
  const opened = await client.openStream(HUB_PATHS.tunnel(root.endpointId, "tcp", "web"));
  assert.equal(opened.status, 403, opened.text || opened.refused);
  assert.match(opened.text, /access_denied/);
  assert.match(opened.text, /bob/);
  assert.equal(echo.accepted, accepted, "bob's hand-built tunnel reached the target");

  // Alice still gets through.
  await echoRoundTrip(alicePort, 4096);
});

Deno.test("a service without users is its user's and root's; users [\"*\"] opens it to everyone", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;
  await putService(alice, "own", { port: echo.port });

  const rootPort = await mapPort(root, { service: "own" });
  await reachable(rootPort, "root through its mapping to alice's service");
  const bobPort = await mapPort(bob, { service: "own", user: "alice" });
  await assertRefused(bobPort, echo, "bob to alice's service without users");

  await putService(alice, "own", { port: echo.port, users: ["*"] });
  await reachable(bobPort, "bob once the service is open to everyone");
  await echoRoundTrip(rootPort, 4096);
});

Deno.test("narrowing a strict service's users closes the live connections of users no longer allowed", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;
  await putService(root, "live", { port: echo.port, users: ["alice", "bob"], strict: true });
  const alicePort = await mapPort(alice, { service: "live" });
  const bobPort = await mapPort(bob, { service: "live" });
  await reachable(alicePort, "alice through her mapping");
  await reachable(bobPort, "bob through his mapping");

  const aliceConn = await openConnection(alicePort);
  const bobConn = await openConnection(bobPort);
  try {
    const data = randomBytes(4096);
    assert.deepEqual(await aliceConn.exchange(data), data);
    assert.deepEqual(await bobConn.exchange(data), data);

    await putService(root, "live", { port: echo.port, users: ["alice"], strict: true });
    const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), IO_TIMEOUT_MS));
    assert.notEqual(
      await Promise.race([bobConn.ended, timeout]),
      "timeout",
      "bob's live connection",
    );
    assert.deepEqual(await aliceConn.exchange(data), data, "alice's live connection goes on");
  } finally {
    aliceConn.close();
    bobConn.close();
  }
  await assertRefused(bobPort, echo, "bob's new connection");
});

Deno.test("a mapping spreads connections over its user's providers, skips dead ones, and takes back a returning one", async () => {
  await using h = new Harness();
  await using echo1 = await startEchoServer();
  const echo2 = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "root"]);
  const root1 = m.agents.root;
  const root2 = await startJoinedAgent(h, m.hub.address, root1.files, "root-ep2");
  await addService(root1, "lb", echo1.port, ["alice"]);
  await addService(root2, "lb", echo2.port, ["alice"]);
  await eventually(
    async () => {
      const res = await api(m.agents.alice.url, "GET", `/api/meshes/${MESH}/services?q=lb`);
      return res.body.items?.[0]?.providers?.filter((p: ApiBody) => p.online).length === 2;
    },
    15_000,
    "both providers of lb listed online",
  );
  const port = await mapPort(m.agents.alice, { service: "lb" });

  for (let i = 0; i < 40; i++) await echoRoundTrip(port, 1024);
  assert.ok(echo1.accepted >= 10 && echo2.accepted >= 10, `${echo1.accepted} / ${echo2.accepted}`);

  // One provider's agent stops: every new connection goes through the other.
  const stopped = await root2.proc.stop();
  assert.equal(stopped.success, true);
  let before = echo1.accepted;
  for (let i = 0; i < 20; i++) await echoRoundTrip(port, 1024);
  assert.equal(echo1.accepted, before + 20);

  // It comes back and gets traffic again by itself.
  root2.proc = await h.startAgent({ dir: root2.proc.dir, name: root2.proc.name });
  root2.url = root2.proc.url;
  await waitConnected(root2);
  const back = echo2.accepted;
  await eventually(
    async () => {
      await echoRoundTrip(port, 1024); // every one of these must work
      return echo2.accepted > back;
    },
    15_000,
    "connections reaching the returned provider",
  );

  // A provider whose target refuses connections is skipped with no error the client sees.
  await echo2.close();
  before = echo1.accepted;
  for (let i = 0; i < 20; i++) await echoRoundTrip(port, 1024);
  assert.equal(echo1.accepted, before + 20);
});

Deno.test("another user publishing the same name never joins a mapping's pool; a new mapping must name the user", async () => {
  await using h = new Harness();
  await using rootEcho = await startEchoServer();
  await using bobEcho = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;
  await addService(root, "db", rootEcho.port, ["alice"]);
  const port = await mapPort(alice, { service: "db" });
  await reachable(port, "alice through her mapping to root's db");

  await addService(bob, "db", bobEcho.port, ["alice"]);
  await eventually(
    async () => {
      const res = await api(alice.url, "GET", `/api/meshes/${MESH}/services?q=db`);
      return res.body.items?.length === 2;
    },
    15_000,
    "bob's db listed beside root's",
  );
  for (let i = 0; i < 30; i++) await echoRoundTrip(port, 1024);
  assert.equal(bobEcho.accepted, 0, "a connection of root's pool went to bob's endpoint");

  const ambiguous = await mapOn(alice, await freePort(), { service: "db" });
  assert.equal(ambiguous.status, 409, JSON.stringify(ambiguous.body));
  assert.equal(ambiguous.body.error.code, "ambiguous_service");
  assert.match(ambiguous.body.error.message, /bob, root/);

  const toBob = await mapPort(alice, { service: "db", user: "bob" });
  await reachable(toBob, "alice through a mapping that names bob");
  assert.ok(bobEcho.accepted >= 1);

  // The mapping's fixed user shows in its listing.
  const ports = await api(
    alice.url,
    "GET",
    `/api/meshes/${MESH}/endpoints/${alice.endpointId}/ports`,
  );
  const first = ports.body.find((p: ApiBody) => p.port === port);
  assert.equal(first.target.user, "root");
});
