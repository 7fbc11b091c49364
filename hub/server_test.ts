/**
 * The hub server in-process, with certificates of a test CA and a hand-built
 * HTTP/2 client: its route table and refusals by route, status, the CRL
 * route's answers, what `applyRevocations`, `setHubList` and `setIdentity`
 * do to sessions open now. Admission, limits and tunnels end to end are
 * `tests/hub/`'s.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { normalizeSerial } from "@ztm/shared/crl";
import { Logger } from "@ztm/shared/log";
import { HUB_PATHS, PROTOCOL_VERSION } from "@ztm/shared/protocol";
import { VERSION } from "@ztm/shared/version";
import { withDeadline } from "../tests/fixtures/ca_helpers.ts";
import { errorCode, HubClient } from "../tests/fixtures/hub_client.ts";
import { lineReader } from "../tests/fixtures/h2_server.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { type HubLimits, HubServer, type RevocationView } from "./server.ts";

/** What the test tells the server about revocations. */
class Revocations implements RevocationView {
  revoked = new Set<string>();
  pem: string | undefined;
  number = 0;
  isRevoked(serial: string): boolean {
    return this.revoked.has(serial);
  }
  crlPem(): string | undefined {
    return this.pem;
  }
  crlNumber(): number {
    return this.number;
  }
  status(): unknown {
    return { crlNumber: this.number };
  }
}

async function startHub(opts: { data?: boolean; limits?: Partial<HubLimits> } = {}) {
  const ca = await newCa();
  const cert = await newLeaf(ca, { name: "hub", role: "server", altNames: ["localhost"] });
  const revocations = new Revocations();
  const server = new HubServer({
    caPem: ca.pem,
    certPem: cert.certificate,
    keyPem: cert.privateKey,
    revocations,
    log: new Logger("hub", { sink: () => {} }),
    dataListen: opts.data === false ? undefined : { hostname: "127.0.0.1", port: 0 },
    limits: opts.limits,
  });
  const addr = await server.listen({ hostname: "127.0.0.1", port: 0 });
  const clients: HubClient[] = [];
  const client = async (user = "alice") => {
    const leaf = await newLeaf(ca, { name: user });
    const c = HubClient.connect(addr.port, {
      ca: ca.pem,
      cert: leaf.certificate,
      key: leaf.privateKey,
    });
    clients.push(c);
    return Object.assign(c, { serial: serialOf(parseCertificate(leaf.certificate)) });
  };
  /** Registers endpoint `seed` of `c`: its id, control stream and line reader past the welcome. */
  const register = async (c: HubClient, seed = "s1") => {
    const hello = JSON.stringify({ type: "hello", name: seed, seed, version: "t", services: [] });
    const id = endpointIdOfCertificate(c.cert!, seed);
    const opened = await c.openStream(HUB_PATHS.control(id), hello + "\n");
    assert.equal(opened.status, 200, opened.text);
    const reader = lineReader(opened.stream);
    return { id, stream: opened.stream, reader, welcome: await reader.next() };
  };
  return {
    ca,
    server,
    addr,
    revocations,
    client,
    register,
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await server.close();
    },
  };
}

Deno.test("status tells the version, sessions, endpoints, the bound data port and the revocation state", async () => {
  await using hub = await startHub();
  const c = await hub.client();
  const r = await hub.register(c);
  assert.equal(typeof r.welcome.hub.dataPort, "number");
  const reply = await c.request("GET", HUB_PATHS.status);
  assert.equal(reply.status, 200);
  const status = JSON.parse(reply.text);
  assert.deepEqual(status, {
    ...status,
    version: VERSION,
    protocol: PROTOCOL_VERSION,
    sessions: 1,
    endpoints: 1,
    online: 1,
    tunnels: 0,
    dataPort: r.welcome.hub.dataPort,
    controlConnections: { held: 1, refused: 0 },
    revocations: { crlNumber: 0 },
  });
  assert.equal(hub.server.status().sessions, 1);
});

Deno.test("the routes are the wire contract's: an unknown path 404, another method 405, another protocol 400", async () => {
  await using hub = await startHub();
  const c = await hub.client();
  const unknown = await c.request("GET", "/api/nothing");
  assert.deepEqual([unknown.status, errorCode(unknown.text)], [404, "unknown_route"]);
  const method = await c.request("DELETE", HUB_PATHS.status);
  assert.deepEqual([method.status, errorCode(method.text)], [405, "method_not_allowed"]);
  const old = await c.request("GET", HUB_PATHS.status, { protocol: "1" });
  assert.deepEqual([old.status, errorCode(old.text)], [400, "protocol_mismatch"]);
  const listed = await c.request("GET", `${HUB_PATHS.endpoints}?limit=1`);
  assert.deepEqual(JSON.parse(listed.text).items, []);
  const one = await c.request("GET", HUB_PATHS.endpoint(`ep-${"0".repeat(32)}`));
  assert.deepEqual([one.status, errorCode(one.text)], [404, "unknown_endpoint"]);
});

Deno.test("the CRL route: 503 without a CRL, 204 to an agent that holds it, the PEM otherwise", async () => {
  await using hub = await startHub();
  const c = await hub.client();
  const none = await c.request("GET", HUB_PATHS.crl);
  assert.deepEqual([none.status, errorCode(none.text)], [503, "no_crl"]);
  hub.revocations.pem = "-----BEGIN X509 CRL-----\nAA==\n-----END X509 CRL-----\n";
  hub.revocations.number = 3;
  for (
    const [query, status] of [["?after=3", 204], ["?after=4", 204], ["?after=2", 200], ["", 200], [
      "?after=x",
      200,
    ]] as const
  ) {
    const reply = await c.request("GET", HUB_PATHS.crl + query);
    assert.equal(reply.status, status, query);
    assert.equal(reply.text, status === 200 ? hub.revocations.pem : "", query);
  }
});

Deno.test("tunnels and management need a registered endpoint; tunnels need tcp or udp and a data port", async () => {
  await using hub = await startHub();
  const c = await hub.client();
  const target = `ep-${"0".repeat(32)}`;
  const early = await c.request("POST", HUB_PATHS.tunnel(target, "tcp", "web"));
  assert.deepEqual([early.status, errorCode(early.text)], [403, "not_registered"]);
  const manage = await c.request("POST", HUB_PATHS.manage(target), { body: "{}" });
  assert.deepEqual([manage.status, errorCode(manage.text)], [403, "not_registered"]);
  await hub.register(c);
  const proto = await c.request("POST", HUB_PATHS.tunnel(target, "sctp", "web"));
  assert.deepEqual([proto.status, errorCode(proto.text)], [400, "bad_proto"]);
  const unknown = await c.request("POST", HUB_PATHS.tunnel(target, "udp", "dns"));
  assert.deepEqual([unknown.status, errorCode(unknown.text)], [404, "unknown_endpoint"]);

  await using noData = await startHub({ data: false });
  const d = await noData.client();
  const r = await noData.register(d);
  assert.equal(r.welcome.hub.dataPort, undefined, "agents are told there is no data port");
  const refused = await d.request("POST", HUB_PATHS.tunnel(target, "tcp", "web"));
  assert.deepEqual([refused.status, errorCode(refused.text)], [503, "no_data_port"]);
  assert.equal(noData.server.status().dataPort, null);
});

Deno.test("applyRevocations tells agents the CRL number and closes only the sessions of revoked serials", async () => {
  await using hub = await startHub();
  const alice = await hub.client("alice");
  const bob = await hub.client("bob");
  const a = await hub.register(alice);
  const b = await hub.register(bob);
  const aliceClosed = new Promise((resolve) => alice.session.once("close", resolve));
  hub.server.applyRevocations(new Set([alice.serial]), 7);
  assert.deepEqual(await b.reader.next(), { type: "crl", number: 7 });
  await withDeadline(aliceClosed, 5_000, "alice's session closing");
  await a.reader.ended();
  assert.equal((await bob.request("GET", HUB_PATHS.status)).status, 200, "bob's session stays");
  hub.server.applyRevocations(new Set(["ff"])); // the feed's early word: no CRL number to tell
  hub.server.setHubList([]);
  assert.deepEqual(await b.reader.next(), { type: "hubs", hubs: [] }, "no crl line came before");
});

Deno.test("a revoked serial is refused at admission: the session gets no answer", async () => {
  await using hub = await startHub();
  const alice = await hub.client("alice");
  hub.revocations.revoked.add(alice.serial);
  const reply = await alice.request("GET", HUB_PATHS.status);
  assert.equal(reply.status, undefined);
  assert.equal(hub.server.status().sessions, 0);
});

Deno.test("setHubList reaches every control stream now and each later welcome", async () => {
  await using hub = await startHub();
  const first = await hub.register(await hub.client("alice"));
  const hubs = [{ addresses: ["hub2.example:8888"], certificate: "PEM" }];
  hub.server.setHubList(hubs);
  assert.deepEqual(await first.reader.next(), { type: "hubs", hubs });
  const later = await hub.register(await hub.client("bob"));
  assert.equal(later.welcome.type, "welcome");
  assert.deepEqual(await later.reader.next(), { type: "hubs", hubs });
});

Deno.test("setIdentity serves the new certificate to new connections while open sessions go on", async () => {
  await using hub = await startHub();
  const c = await hub.client();
  assert.equal((await c.request("GET", HUB_PATHS.status)).status, 200);
  const next = await newLeaf(hub.ca, { name: "hub", role: "server", altNames: ["localhost"] });
  hub.server.setIdentity({ caPem: hub.ca.pem, certPem: next.certificate, keyPem: next.privateKey });
  assert.equal(
    await servedSerial(hub.ca, hub.addr.port),
    serialOf(parseCertificate(next.certificate)),
  );
  assert.equal((await c.request("GET", HUB_PATHS.status)).status, 200);
});

async function servedSerial(ca: TestCa, port: number): Promise<string> {
  const leaf = await newLeaf(ca, { name: "probe" });
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: ca.pem,
    cert: leaf.certificate,
    key: leaf.privateKey,
    ALPNProtocols: ["h2"],
  });
  socket.on("error", () => {});
  try {
    await withDeadline(new Promise((r) => socket.once("secureConnect", r)), 5_000, "TLS");
    return normalizeSerial(socket.getPeerCertificate().serialNumber);
  } finally {
    socket.destroy();
  }
}
