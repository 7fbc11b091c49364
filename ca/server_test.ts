/**
 * `createCaApp` in-process over a real store, served on a loopback port: each
 * route's answer and content type, each refusal's status and code, and the
 * guard (loopback `Host`, same `Origin`, the token beyond loopback, the
 * hub-certificate routes always). The same contract against a real CA
 * process is in `tests/ca/`.
 */
import assert from "node:assert/strict";
import { fingerprintOf, generateKeyPair, parseCertificate, x509 } from "@ztm/shared/certs";
import { errorBody } from "@ztm/shared/errors";
import { type App, serveHttp } from "@ztm/shared/http";
import { Logger } from "@ztm/shared/log";
import { openCaWithInvites } from "./_fixture.ts";
import { createCaApp, MAX_BODY_BYTES } from "./server.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";
const PEM = "application/x-pem-file";

/** A CA app on a fresh database, served on 127.0.0.1:0. */
async function openCa(loopbackOnly = true) {
  const ca = await openCaWithInvites();
  const { store, signingKey } = ca;
  const app = createCaApp({
    store,
    issuer: ca.issuer,
    revoker: ca.revoker,
    caCertificatePem: signingKey.certificatePem,
    token: TOKEN,
    loopbackOnly,
    invites: ca.invites,
  });
  const server = serveHttp({
    listen: { hostname: "127.0.0.1", port: 0 },
    app,
    log: new Logger("ca", { sink: () => {} }),
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    app,
    url,
    store,
    signingKey,
    /** One request; the body is read. */
    async call(method: string, path: string, init: RequestInit = {}) {
      const res = await fetch(url + path, { method, ...init });
      const text = await res.text();
      return {
        status: res.status,
        type: res.headers.get("content-type") ?? "",
        headers: res.headers,
        text,
      };
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await ca[Symbol.asyncDispose]();
    },
  };
}

/** Asserts the JSON error body `{"error":{"code"}}` with `status`. */
function assertError(
  reply: { status: number; type: string; text: string },
  status: number,
  code: string,
) {
  assert.equal(reply.status, status, reply.text);
  assert.match(reply.type, /^application\/json/);
  assert.equal(JSON.parse(reply.text).error.code, code, reply.text);
}

async function csrFor(cn: string, altNames: string[] = []): Promise<string> {
  return (await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys: await generateKeyPair(),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: altNames.length
      ? [
        new x509.SubjectAlternativeNameExtension(
          altNames.map((value): x509.JsonGeneralName => ({ type: "dns", value })),
        ),
      ]
      : [],
  })).toString("pem");
}

Deno.test("GET /api/status and /api/certificates/ca describe the CA certificate", async () => {
  await using ca = await openCa();
  const status = await ca.call("GET", "/api/status");
  assert.equal(status.status, 200);
  const body = JSON.parse(status.text).ca;
  assert.equal(body.subject, ca.signingKey.certificate.subject);
  assert.equal(body.fingerprint, await fingerprintOf(ca.signingKey.certificate));
  assert.equal(body.notAfter, ca.signingKey.certificate.notAfter.toISOString());
  assert.ok(body.daysLeft > 3000, "a new CA lives ten years");
  assert.equal(body.warning, null);
  const pem = await ca.call("GET", "/api/certificates/ca");
  assert.equal(pem.status, 200);
  assert.equal(pem.type, PEM);
  assert.equal(pem.text, ca.signingKey.certificatePem);
});

Deno.test("POST /api/certificates/:name issues a key, or signs a CSR, and GET returns the live certificate", async () => {
  await using ca = await openCa();
  const issued = await ca.call("POST", "/api/certificates/alice");
  assert.equal(issued.status, 201);
  assert.equal(issued.type, PEM);
  assert.match(issued.text, /BEGIN PRIVATE KEY/);
  const got = await ca.call("GET", "/api/certificates/alice");
  assert.equal(got.type, PEM);
  assert.equal(parseCertificate(got.text).subject, "CN=alice");
  const signed = await ca.call("POST", "/api/certificates/bob", {
    body: `\n${await csrFor("bob")}\n`,
  });
  assert.equal(signed.status, 201);
  assert.equal(parseCertificate(signed.text).subject, "CN=bob");
  const list = JSON.parse((await ca.call("GET", "/api/certificates")).text);
  assert.deepEqual(list.map((c: { name: string }) => c.name).sort(), ["alice", "bob"]);
  assert.ok(!(await ca.call("GET", "/api/certificates")).text.includes("PRIVATE KEY"));
});

Deno.test("the certificate routes refuse bad names, bodies and unknown certificates, and issue nothing", async () => {
  await using ca = await openCa();
  assertError(await ca.call("POST", "/api/certificates/a%20b"), 400, "bad_name");
  assertError(await ca.call("POST", "/api/certificates/ca"), 400, "bad_name");
  const notCsr = await ca.call("POST", "/api/certificates/alice", { body: "hello" });
  assertError(notCsr, 400, "bad_csr");
  assert.match(JSON.parse(notCsr.text).error.message, /^Body must be empty \(new key\) or a PEM/);
  assertError(
    await ca.call("POST", "/api/certificates/alice", { body: await csrFor("mallory") }),
    400,
    "csr_name_mismatch",
  );
  assertError(
    await ca.call("POST", "/api/certificates/alice", { body: "x".repeat(16 * 1024 + 1) }),
    413,
    "body_too_large",
  );
  // The limit is 16 KiB, and a body of exactly that is read (and refused for what it is).
  assert.equal(MAX_BODY_BYTES, 16 * 1024);
  assertError(
    await ca.call("POST", "/api/certificates/alice", { body: "x".repeat(16 * 1024) }),
    400,
    "bad_csr",
  );
  assertError(await ca.call("GET", "/api/certificates/nobody"), 404, "unknown_certificate");
  assertError(await ca.call("GET", "/api/certificates/-x"), 400, "bad_name");
  assertError(await ca.call("DELETE", "/api/certificates/-x"), 400, "bad_name");
  assertError(await ca.call("GET", "/api/certificates/%zz"), 400, "bad_path");
  assert.equal(ca.store.list().length, 0);
  await ca.call("POST", "/api/certificates/alice");
  assertError(await ca.call("POST", "/api/certificates/ALICE"), 409, "name_taken");
});

Deno.test("DELETE /api/certificates/:name revokes every certificate of the user, and the CRL and feed list them", async () => {
  await using ca = await openCa();
  await ca.call("POST", "/api/certificates/alice");
  const serial = ca.store.list()[0].serial;
  const revoked = await ca.call("DELETE", "/api/certificates/alice");
  assert.equal(revoked.status, 200);
  const body = JSON.parse(revoked.text);
  assert.equal(body.revoked.serial, serial);
  assert.deepEqual(body.all.map((r: { serial: string }) => r.serial), [serial]);
  assertError(await ca.call("GET", "/api/certificates/alice"), 404, "unknown_certificate");
  const crl = await ca.call("GET", "/api/crl");
  assert.equal(crl.type, PEM);
  assert.deepEqual(
    new x509.X509Crl(crl.text).entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, "")),
    [serial],
  );
  const feed = JSON.parse((await ca.call("GET", "/api/revocations?since=0")).text);
  assert.equal(feed.seq, 1);
  assert.deepEqual(feed.revocations.map((r: { serial: string }) => r.serial), [serial]);
  // Nothing newer: answered at once with wait=0.
  assert.deepEqual(
    JSON.parse((await ca.call("GET", "/api/revocations?since=1&wait=0")).text).revocations,
    [],
  );
  for (const q of ["since=-1", "since=abc", "wait=1.5", `since=${"9".repeat(16)}`]) {
    assertError(await ca.call("GET", `/api/revocations?${q}`), 400, "bad_query");
  }
});

Deno.test("the hub-certificate routes need the CA token even on loopback", async () => {
  await using ca = await openCa();
  const csr = await csrFor("hub1", ["hub.example.com"]);
  assertError(await ca.call("POST", "/api/hub-certificates", { body: csr }), 401, "token_required");
  assertError(
    await ca.call("POST", "/api/hub-certificates", {
      body: csr,
      headers: { authorization: "Bearer wrong" },
    }),
    401,
    "token_required",
  );
  assert.equal(ca.store.list().length, 0);
  const auth = { authorization: `Bearer ${TOKEN}` };
  const issued = await ca.call("POST", "/api/hub-certificates", { body: csr, headers: auth });
  assert.equal(issued.status, 201);
  const serial = ca.store.list()[0].serial;
  assertError(await ca.call("DELETE", `/api/hub-certificates/${serial}`), 401, "token_required");
  assertError(
    await ca.call("DELETE", "/api/hub-certificates/xyz", { headers: auth }),
    400,
    "bad_serial",
  );
  const revoked = await ca.call("DELETE", `/api/hub-certificates/${serial}`, { headers: auth });
  assert.equal(JSON.parse(revoked.text).revoked.serial, serial);
});

Deno.test("on loopback, a foreign Host or Origin is refused 403 before any route runs", async () => {
  await using ca = await openCa();
  const refuse = async (app: App, headers: Record<string, string>, code: string) => {
    let err: unknown;
    try {
      await app(
        new Request("http://127.0.0.1/api/certificates/alice", { method: "POST", headers }),
      );
    } catch (e) {
      err = e;
    }
    const { status, body } = errorBody(err);
    assert.deepEqual([status, body.error.code], [403, code], JSON.stringify(headers));
  };
  await refuse(ca.app, { host: "evil.example" }, "foreign_host");
  await refuse(ca.app, { host: "127.0.0.1.evil.example" }, "foreign_host");
  await refuse(ca.app, { host: "127.0.0.1", origin: "http://evil.example" }, "foreign_origin");
  assert.equal(ca.store.list().length, 0);
  // Over the socket: a foreign Origin, and the page's own origin that passes.
  assertError(
    await ca.call("POST", "/api/certificates/alice", {
      headers: { origin: "http://evil.example" },
    }),
    403,
    "foreign_origin",
  );
  const host = new URL(ca.url).host;
  const own = await ca.call("POST", "/api/certificates/alice", {
    headers: { origin: `http://${host}` },
  });
  assert.equal(own.status, 201);
});

Deno.test("beyond loopback every route but the CA certificate and CRL needs the token", async () => {
  await using ca = await openCa(false);
  for (
    const [method, path] of [
      ["GET", "/api/status"],
      ["GET", "/api/certificates"],
      ["POST", "/api/certificates/alice"],
      ["GET", "/api/revocations"],
      ["GET", "/api/invites"],
      ["GET", "/api/nothing"],
    ]
  ) {
    assertError(await ca.call(method, path), 401, "token_required");
  }
  assert.equal(ca.store.list().length, 0);
  assert.equal((await ca.call("GET", "/api/certificates/ca")).status, 200);
  assert.equal((await ca.call("GET", "/api/crl")).status, 200);
  const auth = { authorization: `Bearer ${TOKEN}` };
  assert.equal((await ca.call("POST", "/api/certificates/alice", { headers: auth })).status, 201);
  // Any Host is fine beyond loopback; the token still decides.
  const res = await ca.app(
    new Request("http://ca.example/api/certificates", { headers: { host: "ca.example", ...auth } }),
  );
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("an unknown route is 404 and a wrong method 405 naming the allowed ones", async () => {
  await using ca = await openCa();
  assertError(await ca.call("GET", "/api/nothing"), 404, "unknown_route");
  const wrong = await ca.call("PUT", "/api/certificates/alice");
  assertError(wrong, 405, "method_not_allowed");
  assert.deepEqual(wrong.headers.get("allow")?.split(", ").sort(), ["DELETE", "GET", "POST"]);
});
