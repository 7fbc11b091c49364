/**
 * Who the hub lets in and what a member may reach, with real processes over
 * loopback: certificates that must never get a session (another CA's, an
 * expired one, a hub's, none), the protocol version check, the endpoint-id
 * binding, the provider's access check, and revocation of a live member.
 *
 * Refused certificates are driven by a hand-built `node:http2` client and by
 * curl; every denial is paired with a positive control through the same path.
 */
import assert from "node:assert/strict";
import {
  exportPrivateKeyPem,
  generateKeyPair,
  parseCertificate,
  subjectAltNames,
  x509,
} from "@ztm/shared/certs";
import {
  api,
  eventually,
  Harness,
  issueUser,
  joinMesh,
  type Service,
  type UserFiles,
} from "../fixtures/harness.ts";
import { type ClientTls, errorCode, HubClient, userTls } from "../fixtures/hub_client.ts";
import {
  addPortMapping,
  addService,
  endpointSeenBy,
  MESH,
  type MeshAgent,
  meshStatus,
  never,
  startMeshOf,
} from "../fixtures/mesh_fixture.ts";
import { withDeadline } from "../fixtures/ca_helpers.ts";
import { meshCaOf, newCa, newLeaf } from "../fixtures/test_pki.ts";
import { curlHub } from "../fixtures/tls_clients.ts";
import { exchangeConn, finish, hubStatus } from "../fixtures/data_fixture.ts";
import { openE2eTunnel } from "../fixtures/e2e_caller.ts";
import { PROTOCOL_VERSION } from "@ztm/shared/protocol";
import {
  equalBytes,
  freePort,
  openConnection,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

/** The hub's data port, as its status names it. */
async function dataPortOf(client: HubClient): Promise<number> {
  return (await hubStatus(client)).dataPort;
}

/**
 * A tunnel opened by hand on `client` (as endpoint `endpoint` of `files`' user) to bob's
 * `echo`: `bytes` random bytes must come back whole; then the tunnel is closed.
 */
async function echoByHand(
  client: HubClient,
  files: UserFiles,
  endpoint: string,
  bob: MeshAgent,
  bytes: number,
): Promise<void> {
  const tunnel = await openE2eTunnel({
    client,
    files,
    endpoint,
    target: bob.endpointId,
    targetUser: "bob",
    service: "echo",
  }, await dataPortOf(client));
  const data = randomBytes(bytes);
  assert.ok(equalBytes(await exchangeConn(tunnel, data), data));
  await finish(tunnel);
}

/** `GET /api/status` on a fresh session with `tls`; closes the session. */
async function statusWith(port: number, tls: ClientTls, protocol?: string) {
  await using client = HubClient.connect(port, tls);
  return await client.request("GET", "/api/status", { protocol });
}

/** A leaf from `test_pki.ts` as client TLS material. */
function asClient(
  leaf: { certificate: string; privateKey: string },
): { cert: string; key: string } {
  return { cert: leaf.certificate, key: leaf.privateKey };
}

/** A hub-role (serverAuth) certificate from the real CA's hub route, with its key. */
async function hubRoleCertificate(
  ca: Service & { database: string },
): Promise<{ cert: string; key: string }> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=alice",
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [subjectAltNames(["localhost"])],
  });
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const res = await fetch(`${ca.url}/api/hub-certificates`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/pkcs10" },
    body: csr.toString("pem"),
  });
  const cert = await res.text();
  assert.equal(res.status, 201, cert);
  return { cert, key: await exportPrivateKeyPem(keys.privateKey) };
}

Deno.test("hub refuses certificates from another CA, expired, hub-role or missing, and admits a member", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const dir = await h.tempDir("ztm-certs-");

  // Another CA, made in-process: a well-formed client certificate that does not chain.
  const foreign = asClient(await newLeaf(await newCa(), { name: "alice" }));
  // The real mesh CA's key signs a client certificate that expired days ago.
  const meshCa = await meshCaOf(ca);
  const expired = asClient(
    await newLeaf(meshCa, { name: "alice", now: new Date(Date.now() - 10 * 86_400_000), days: 1 }),
  );
  assert.ok(parseCertificate(expired.cert).notAfter.getTime() < Date.now());
  // A hub's (serverAuth) certificate from the CA, presented as a client.
  const hubRole = await hubRoleCertificate(ca);

  const refused: Record<string, ClientTls> = {
    "another CA": { ca: alice.ca, ...foreign },
    "expired": { ca: alice.ca, ...expired },
    "hub role": { ca: alice.ca, ...hubRole },
    "no certificate": { ca: alice.ca },
  };
  for (const [what, tls] of Object.entries(refused)) {
    const reply = await statusWith(hub.port, tls);
    assert.equal(
      reply.status,
      undefined,
      `${what}: the hub answered ${reply.status} ${reply.text}`,
    );
    assert.ok(reply.refused, `${what}: no reason for the refusal`);
    const curl = await curlHub(dir, hub.port, tls);
    assert.notEqual(curl.httpCode, 200, `${what}: curl got 200`);
    assert.notEqual(curl.code, 0, `${what}: curl succeeded with HTTP ${curl.httpCode}`);
  }

  // Positive control through the same two clients.
  const ok = await statusWith(hub.port, userTls(alice));
  assert.equal(ok.status, 200, ok.text);
  assert.equal(JSON.parse(ok.text).protocol, PROTOCOL_VERSION);
  const curlOk = await curlHub(dir, hub.port, userTls(alice));
  assert.equal(curlOk.httpCode, 200, curlOk.stderr);
  assert.equal(curlOk.code, 0);
  // The hub is still serving after the refusals, and logged them.
  assert.equal(hub.exited, false);
  assert.ok(
    hub.logs.some((l) => l.msg === "handshake refused" || l.msg === "peer refused"),
    "no refusal in the hub log",
  );
});

Deno.test("hub answers 400 protocol_mismatch to a request of another protocol version", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  await using client = HubClient.connect(hub.port, userTls(alice));
  const reply = await client.request("GET", "/api/status", { protocol: "99" });
  assert.equal(reply.status, 400, reply.text);
  assert.equal(errorCode(reply.text), "protocol_mismatch");
  assert.match(JSON.parse(reply.text).error.message, /99/);
  // The same session, with the right version, is served.
  const ok = await client.request("GET", "/api/status");
  assert.equal(ok.status, 200, ok.text);
});

Deno.test("an endpoint id registered by one user cannot be taken by another", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const bob = await issueUser(ca.url, "bob");
  await using aliceClient = HubClient.connect(hub.port, userTls(alice));
  const mine = await aliceClient.openControl("taken-test", "a");
  const id = mine.id;
  assert.equal(mine.status, 200, mine.text);
  assert.equal(mine.welcome?.type, "welcome");

  await using bobClient = HubClient.connect(hub.port, userTls(bob));
  const theirs = await bobClient.openControl("taken-test", "b", { id });
  assert.equal(theirs.status, 403, theirs.text);
  assert.equal(errorCode(theirs.text), "endpoint_taken");

  // Also after alice's session is gone (the record stays until purged): still hers.
  await aliceClient.close();
  const probe = await bobClient.request("GET", `/api/endpoints/${id}`);
  assert.equal(probe.status, 200, probe.text);
  const record = JSON.parse(probe.text);
  assert.equal(record.user, "alice");
  await eventually(
    async () => {
      const r = await bobClient.request("GET", `/api/endpoints/${id}`);
      return r.status === 200 && JSON.parse(r.text).online === false;
    },
    10_000,
    "alice's endpoint offline",
  );
  const again = await bobClient.openControl("taken-test", "b", { id });
  assert.equal(again.status, 403, again.text);
  assert.equal(errorCode(again.text), "endpoint_taken");
});

Deno.test("the provider decides access: a member not listed gets 403 and never reaches the target", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const bob = m.agents.bob;
  await addService(bob, "echo", target.port, []);

  // Alice speaks the hub protocol directly: her own endpoint first, then the tunnel.
  await using client = HubClient.connect(m.hub.port, userTls(m.agents.alice.files));
  const control = await client.openControl("alice-by-hand", "alice-hand");
  assert.equal(control.status, 200, control.text);
  await eventually(
    async () => {
      const svc = await client.request("GET", "/api/services?q=echo");
      return svc.status === 200 &&
        JSON.parse(svc.text).items.some((s: { name: string }) => s.name === "echo");
    },
    10_000,
    "bob's echo service listed at the hub",
  );

  const denied = await client.openTunnel(bob.endpointId, "echo");
  assert.equal(denied.status, 403, denied.text);
  assert.equal(errorCode(denied.text), "access_denied");
  assert.equal(target.accepted, 0, "a refused tunnel reached the target");

  // Positive control: once bob lists alice, the same client gets through and bytes echo.
  await addService(bob, "echo", target.port, ["alice"]);
  await echoByHand(client, m.agents.alice.files, "alice-by-hand", bob, 32 * 1024);
  assert.equal(target.accepted, 1);
});

Deno.test("hub closes live sessions of a revoked certificate and keeps it out", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  await addService(bob, "echo", target.port, ["alice"]);
  const port = await freePort();
  await addPortMapping(alice, port, "echo");

  // A live tunneled connection moving data.
  const conn = await eventually(
    async () => {
      const c = await openConnection(port);
      try {
        const data = randomBytes(4096);
        if (equalBytes(await c.exchange(data), data)) return c;
      } catch (err) {
        c.close();
        throw err;
      }
      c.close();
      return undefined;
    },
    15_000,
    "data through alice's port mapping",
  );
  const more = randomBytes(64 * 1024);
  assert.ok(equalBytes(await conn.exchange(more), more));

  const del = await fetch(`${m.ca.url}/api/certificates/alice`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());

  // Alice's agent is cut off, the hub lists her endpoint offline, the tunnel is closed.
  await eventually(
    async () => (await meshStatus(alice)).status.connected === false,
    10_000,
    "alice disconnected",
  );
  await eventually(
    async () => (await endpointSeenBy(bob, alice.endpointId))?.online === false,
    10_000,
    "alice's endpoint offline at the hub",
  );
  await withDeadline(conn.ended, 10_000, "the tunneled connection closing after the revocation");
  conn.close();

  // And it stays out: no reconnection while we watch, with the reason reported.
  await never(
    async () => (await meshStatus(alice)).status.connected === true,
    3_000,
    "alice reconnected",
  );
  assert.equal(
    alice.proc.exited,
    false,
    `alice's agent died while refused:\n${alice.proc.tail(15)}`,
  );
  const status = (await meshStatus(alice)).status;
  assert.equal(status.connected, false);
  assert.equal(typeof status.lastError, "string");
  assert.ok(status.lastError.length > 0);
  assert.equal((await endpointSeenBy(bob, alice.endpointId))?.online, false);
  // Her new connections through the mapping go nowhere.
  const target0 = target.accepted;
  const refusedConn = await openConnection(port);
  await assert.rejects(refusedConn.exchange(randomBytes(16), 5_000));
  refusedConn.close();
  assert.equal(target.accepted, target0);

  // Bob is unaffected: still connected, and a third user (root) reaches his service.
  assert.equal((await meshStatus(bob)).status.connected, true);
  const root = await issueUser(m.ca.url, "root");
  await using rootClient = HubClient.connect(m.hub.port, userTls(root));
  assert.equal((await rootClient.openControl("root-by-hand", "root-hand")).status, 200);
  await echoByHand(rootClient, root, "root-by-hand", bob, 16 * 1024);
  const endpoints = await api(bob.url, "GET", `/api/meshes/${MESH}/endpoints`);
  assert.equal(endpoints.status, 200);
});

Deno.test("an agent whose certificate the hub refuses stays up, backs off and says why", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const mallory = await issueUser(ca.url, "mallory");
  const del = await fetch(`${ca.url}/api/certificates/mallory`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());
  await eventually(
    async () => (await statusWith(hub.port, userTls(mallory))).status === undefined,
    10_000,
    "the hub refuses mallory",
  );

  // Joining checks only that the files fit together, so the agent dials and is refused.
  // Several meshes on one agent make several links knock at once.
  const agent = await h.startAgent({ name: "agent-mallory" });
  const meshes = Array.from({ length: 8 }, (_, i) => `m${i}`);
  for (const mesh of meshes) {
    const res = await api(agent.url, "POST", `/api/meshes/${mesh}`, {
      ca: mallory.ca,
      agent: {
        name: `mallory-${mesh}`,
        certificate: mallory.certificate,
        privateKey: mallory.privateKey,
      },
      bootstraps: [hub.address],
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
  }
  const probe = { url: agent.url, proc: agent };
  await never(
    async () => {
      for (const mesh of meshes) if ((await meshStatus(probe, mesh)).status.connected) return true;
      return false;
    },
    3_000,
    "a refused mesh connected",
  );

  assert.equal(agent.exited, false, `the agent died while refused:\n${agent.tail(15)}`);
  for (const mesh of meshes) {
    const status = (await meshStatus(probe, mesh)).status;
    assert.equal(status.connected, false);
    // The reason a person can act on, not a transport detail.
    assert.match(
      String(status.lastError),
      /certificate/i,
      `${mesh}: lastError ${status.lastError}`,
    );
  }
  // Exponential backoff with jitter, read from the delays the agent
  // itself schedules and logs: with +-50 % jitter on a base that doubles per attempt,
  // every delay is longer than the one two attempts before (until the cap).
  for (const mesh of meshes) {
    const delays = agent.logs
      .filter((l) => l.msg === "hub connection failed" && l.mesh === mesh)
      .map((l) => Number(l.ms));
    assert.ok(delays.length >= 2, `${mesh}: only ${delays.length} attempts logged`);
    for (let i = 2; i < delays.length; i++) {
      assert.ok(
        delays[i] > delays[i - 2] || delays[i] >= 15_000,
        `${mesh}: reconnect delays do not grow: ${delays.join(", ")} ms`,
      );
    }
  }
});

Deno.test("an agent gives up on a hub that accepts TCP but never answers TLS, and says so", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  // A black hole: accepts connections and never sends a byte.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const holding = (async () => {
    for await (const c of silent) held.push(c);
  })();
  try {
    const agent = await h.startAgent({ name: "agent-silent" });
    const port = (silent.addr as Deno.NetAddr).port;
    await joinMesh(agent.url, "silent", await issueUser(ca.url, "alice"), `127.0.0.1:${port}`, "a");
    const line = await agent.waitForLog(
      (l) => l.msg === "hub connection failed" && /no answer from the hub/.test(`${l.err}`),
      30_000,
    );
    assert.equal(line.mesh, "silent");
    // It dials again (backoff), so the hole sees a second connection.
    await eventually(() => held.length >= 2, 30_000, "a second dial after the deadline");
  } finally {
    silent.close();
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await holding.catch(() => {});
  }
});
