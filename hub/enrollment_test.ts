/**
 * Enrollment and renewal through the hub, against a stand-in CA: the
 * enrollment port's two routes, its bounds (body size, per-address burst,
 * requests in flight, addresses remembered), and what it passes on; a
 * member's renewal on the control port, which must be of its own session's
 * certificate and makes the session adopt the new serial and expiry.
 */
import assert from "node:assert/strict";
import type { ServerHttp2Session } from "node:http2";
import net from "node:net";
import tls, { type TLSSocket } from "node:tls";
import {
  certificatePem,
  generateKeyPair,
  issueLeafCertificate,
  parseCertificate,
  serialOf,
} from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";
import { Logger } from "@ztm/shared/log";
import { withDeadline } from "../tests/fixtures/ca_helpers.ts";
import { errorCode } from "../tests/fixtures/hub_client.ts";
import { startH2Server } from "../tests/fixtures/h2_server.ts";
import { deadUrl, StandInCa } from "../tests/fixtures/stand_in_ca.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { admit, type Peer } from "./admit.ts";
import { respondError } from "./respond.ts";
import {
  CaRelay,
  type EnrollmentLimits,
  EnrollmentPort,
  handleRenewal,
  MAX_ENROLL_BYTES,
} from "./enrollment.ts";

function recorder() {
  const logs: Record<string, unknown>[] = [];
  return { logs, log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }) };
}

/** An enrollment port with a fresh hub certificate, relaying to `caUrl`. */
async function enrollmentPort(caUrl: string, limits: Partial<EnrollmentLimits> = {}) {
  const ca = await newCa();
  const hub = await newLeaf(ca, { name: "hub", role: "server", altNames: ["127.0.0.1"] });
  const { logs, log } = recorder();
  const port = new EnrollmentPort({
    listen: { hostname: "127.0.0.1", port: 0 },
    caPem: ca.pem,
    certPem: hub.certificate,
    keyPem: hub.privateKey,
    relay: new CaRelay(caUrl, "the-token"),
    log,
    limits,
  });
  const addr = port.start();
  const client = Deno.createHttpClient({ caCerts: [ca.pem] });
  const base = `https://127.0.0.1:${addr.port}`;
  return {
    ca,
    port,
    addr,
    logs,
    call: async (method: string, path: string, body?: string) => {
      const res = await fetch(`${base}${path}`, { method, body, client });
      return { status: res.status, headers: res.headers, text: await res.text() };
    },
    async [Symbol.asyncDispose]() {
      client.close();
      await port.close();
    },
  };
}

/** `POST /enroll` over TLS from local address `from`; resolves with the status. */
async function enrollFrom(ca: TestCa, port: number, from: string): Promise<number> {
  const tcp = net.connect({ host: "127.0.0.1", port, localAddress: from });
  tcp.on("error", () => {});
  const socket = tls.connect({ socket: tcp, ca: ca.pem, servername: "hub" });
  socket.on("error", () => {});
  try {
    await withDeadline(
      new Promise((resolve) => socket.once("secureConnect", resolve)),
      5_000,
      "TLS",
    );
    socket.write(
      "POST /enroll HTTP/1.1\r\nhost: hub\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    );
    let text = "";
    socket.on("data", (c: Uint8Array) => (text += new TextDecoder().decode(c)));
    await withDeadline(new Promise((resolve) => socket.once("end", resolve)), 5_000, "the answer");
    return Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
  } finally {
    socket.destroy();
    tcp.destroy();
  }
}

Deno.test("the enrollment port hands out the CA certificate and refuses every other route", async () => {
  await using ca = new StandInCa();
  await using p = await enrollmentPort(ca.url);
  const pem = await p.call("GET", "/ca");
  assert.equal(pem.status, 200);
  assert.equal(pem.text, p.ca.pem);
  assert.equal(pem.headers.get("content-type"), "application/x-pem-file");
  assert.equal(pem.headers.get("cache-control"), "no-store");
  const get = await p.call("GET", "/enroll");
  assert.deepEqual([get.status, errorCode(get.text)], [405, "method_not_allowed"]);
  const other = await p.call("POST", "/api/enrollments", "{}");
  assert.deepEqual([other.status, errorCode(other.text)], [404, "unknown_route"]);
  assert.deepEqual(ca.requests, []);
});

Deno.test("an enrollment goes to the CA as it came, with the hub's token, and the CA's answer comes back as it is", async () => {
  await using ca = new StandInCa({
    "POST /api/enrollments": () =>
      new Response('{"error":{"code":"invite_used","message":"Used"}}', { status: 409 }),
  });
  await using p = await enrollmentPort(ca.url);
  const body = JSON.stringify({ invite: "i", endpoint: "laptop", csr: "CSR", proof: "p" });
  const answer = await p.call("POST", "/enroll", body);
  assert.deepEqual(answer.status, 409);
  assert.equal(answer.text, '{"error":{"code":"invite_used","message":"Used"}}');
  assert.equal(answer.headers.get("cache-control"), "no-store");
  assert.deepEqual(ca.requests, [{
    method: "POST",
    path: "/api/enrollments",
    authorization: "Bearer the-token",
    contentType: "application/json",
    body,
  }]);
});

Deno.test("an enrollment over 16 KiB is refused before the CA hears of it; a CA that fails or is gone is reported", async () => {
  await using ca = new StandInCa({
    "POST /api/enrollments": () => new Response("boom", { status: 500 }),
  });
  await using p = await enrollmentPort(ca.url);
  const big = await p.call("POST", "/enroll", "x".repeat(MAX_ENROLL_BYTES + 1));
  assert.deepEqual([big.status, errorCode(big.text)], [400, "too_large"]);
  assert.deepEqual(ca.requests, []);
  const failed = await p.call("POST", "/enroll", "{}");
  assert.deepEqual([failed.status, failed.text], [500, "boom"]);
  assert.ok(p.logs.some((l) => l.msg === "enrollment: the CA failed" && l.status === 500));
  await using gone = await enrollmentPort(deadUrl());
  const down = await gone.call("POST", "/enroll", "{}");
  assert.deepEqual([down.status, errorCode(down.text)], [503, "ca_unreachable"]);
});

Deno.test("each address gets a burst of requests, then slow_down; so does anyone past the requests in flight", async () => {
  const held = Promise.withResolvers<void>();
  await using ca = new StandInCa({ "POST /api/enrollments": () => new Response("{}") });
  await using p = await enrollmentPort(ca.url, { perAddressBurst: 2, perAddressEveryMs: 600_000 });
  assert.equal((await p.call("POST", "/enroll", "{}")).status, 200);
  assert.equal((await p.call("POST", "/enroll", "{}")).status, 200);
  const third = await p.call("POST", "/enroll", "{}");
  assert.deepEqual([third.status, errorCode(third.text)], [429, "slow_down"]);
  assert.equal(p.port.refused, 1);
  assert.equal(ca.requests.length, 2);

  ca.routes["POST /api/enrollments"] = async () => {
    await held.promise;
    return new Response("{}");
  };
  await using busy = await enrollmentPort(ca.url, { maxInFlight: 1 });
  const first = busy.call("POST", "/enroll", "{}");
  await withDeadline(
    (async () => {
      while (ca.requests.length < 3) await new Promise((r) => setTimeout(r, 10));
    })(),
    5_000,
    "the first enrollment at the CA",
  );
  const second = await busy.call("POST", "/enroll", "{}");
  assert.deepEqual([second.status, errorCode(second.text)], [429, "slow_down"]);
  held.resolve();
  assert.equal((await first).status, 200);
  assert.equal((await busy.call("POST", "/enroll", "{}")).status, 200, "its place is free again");
});

Deno.test("the enrollment port remembers at most maxAddresses addresses, forgetting the least recent", async () => {
  await using ca = new StandInCa({ "POST /api/enrollments": () => new Response("{}") });
  await using p = await enrollmentPort(ca.url, {
    perAddressBurst: 1,
    perAddressEveryMs: 600_000,
    maxAddresses: 2,
  });
  const port = p.addr.port;
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.1"), 200);
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.1"), 429, "its one request is spent");
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.2"), 200);
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.3"), 200);
  assert.equal(p.port.trackedAddresses, 2);
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.3"), 429);
  assert.equal(await enrollFrom(p.ca, port, "127.0.0.1"), 200, "127.0.0.1 was forgotten");
});

Deno.test("after setIdentity the enrollment port serves the new certificate on the same address", async () => {
  await using ca = new StandInCa();
  await using p = await enrollmentPort(ca.url);
  const next = await newLeaf(p.ca, { name: "hub", role: "server", altNames: ["127.0.0.1"] });
  await p.port.setIdentity(next.certificate, next.privateKey);
  const socket = tls.connect({ host: "127.0.0.1", port: p.addr.port, ca: p.ca.pem });
  socket.on("error", () => {});
  try {
    await withDeadline(new Promise((r) => socket.once("secureConnect", r)), 5_000, "TLS");
    const served = normalizeSerial(socket.getPeerCertificate().serialNumber);
    assert.equal(served, serialOf(parseCertificate(next.certificate)));
  } finally {
    socket.destroy();
  }
  assert.equal((await p.call("GET", "/ca")).status, 200);
});

/** A control port whose `/renew` hands the stream to `handleRenewal` with the session's admitted peer. */
async function renewalPort(relay: CaRelay | undefined) {
  const peers = new Map<ServerHttp2Session, Peer>();
  const { logs, log } = recorder();
  const server = await startH2Server(async (stream, _headers, session) => {
    await handleRenewal(stream, peers.get(session)!, relay, log).catch((err) =>
      respondError(stream, err)
    );
  }, { onSession: (s) => peers.set(s, admit(s.socket as TLSSocket, () => false)) });
  const client = await server.client("alice");
  const serial = serialOf(parseCertificate(client.certificate));
  return {
    server,
    client,
    serial,
    logs,
    peer: () => [...peers.values()][0],
    renew: (body: unknown) =>
      client.request("POST", "/renew", {
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** A certificate for `keyOf`'s public key (or a fresh one), signed by `ca`, valid 90 days. */
async function renewedFor(ca: TestCa, keyOf?: string): Promise<string> {
  const publicKey = keyOf ? parseCertificate(keyOf).publicKey : (await generateKeyPair()).publicKey;
  return certificatePem(
    await issueLeafCertificate(ca, { commonName: "alice", publicKey, role: "client", days: 90 }),
  );
}

Deno.test("a renewal must be of the session's own certificate, bounded and JSON; a hub without a CA relay refuses it", async () => {
  await using ca = new StandInCa({
    "POST /api/renewals": () => new Response("{}", { status: 400 }),
  });
  await using r = await renewalPort(new CaRelay(ca.url, undefined));
  const big = await r.renew("x".repeat(MAX_ENROLL_BYTES + 1));
  assert.deepEqual([big.status, errorCode(big.text)], [400, "too_large"]);
  const notJson = await r.renew("{");
  assert.deepEqual([notJson.status, errorCode(notJson.text)], [400, "bad_renewal"]);
  const other = await r.renew({ serial: "0a", csr: "c" });
  assert.deepEqual([other.status, errorCode(other.text)], [403, "not_your_certificate"]);
  const noSerial = await r.renew({ csr: "c" });
  assert.deepEqual([noSerial.status, errorCode(noSerial.text)], [403, "not_your_certificate"]);
  assert.equal(ca.requests.length, 0);
  const upper = await r.renew({ serial: r.serial.toUpperCase(), csr: "c" });
  assert.equal(upper.status, 400, "the CA's own answer: the serial matched in any case");
  assert.equal(ca.requests.length, 1);
  assert.equal(ca.requests[0].authorization, null, "no token, no authorization header");

  await using none = await renewalPort(undefined);
  const refused = await none.renew({ serial: none.serial });
  assert.deepEqual([refused.status, errorCode(refused.text)], [403, "no_renewals"]);
});

Deno.test("a renewed certificate of the session's key becomes the session's serial and expiry; another key's does not", async () => {
  const ca = await newCa();
  let answer = "";
  await using standIn = new StandInCa({
    "POST /api/renewals": () =>
      new Response(JSON.stringify({ certificate: answer }), { status: 201 }),
  });
  await using r = await renewalPort(new CaRelay(standIn.url, "tok"));
  answer = await renewedFor(ca);
  const foreign = await r.renew({ serial: r.serial });
  assert.equal(foreign.status, 201);
  assert.equal(r.peer().serial, r.serial, "a certificate of another key changes nothing");
  answer = await renewedFor(ca, r.client.certificate);
  const renewed = await r.renew({ serial: r.serial });
  assert.equal(renewed.status, 201);
  assert.equal(renewed.text, JSON.stringify({ certificate: answer }));
  const fresh = parseCertificate(answer);
  assert.equal(r.peer().serial, serialOf(fresh));
  assert.equal(r.peer().notAfter, fresh.notAfter.getTime());
  assert.ok(r.logs.some((l) => l.msg === "session certificate renewed" && l.previous === r.serial));
});

Deno.test("a renewal the CA cannot take is answered 503 ca_unreachable", async () => {
  await using r = await renewalPort(new CaRelay(deadUrl(), "tok"));
  const down = await r.renew({ serial: r.serial });
  assert.deepEqual([down.status, errorCode(down.text)], [503, "ca_unreachable"]);
  assert.ok(r.logs.some((l) => l.msg === "renewal: the CA is unreachable"));
});

Deno.test("the CA relay announces the hub and asks for the hub list with its token", async () => {
  await using ca = new StandInCa({
    "PUT /api/hubs/0abc": () => new Response(null, { status: 204 }),
    "GET /api/hubs": () => Response.json([]),
  });
  const relay = new CaRelay(ca.url, "tok");
  await relay.announce("0abc", ["hub:8888"], ["hub:8890"]);
  assert.deepEqual(await relay.hubs(), { status: 200, body: "[]" });
  assert.deepEqual(ca.requests.map((r) => [r.method, r.path, r.authorization, r.body]), [
    ["PUT", "/api/hubs/0abc", "Bearer tok", '{"control":["hub:8888"],"enroll":["hub:8890"]}'],
    ["GET", "/api/hubs", "Bearer tok", ""],
  ]);
  await assert.rejects(
    relay.announce("0def", [], []),
    (err: Error) => err.message.startsWith("the CA answered 404: "),
  );
});
