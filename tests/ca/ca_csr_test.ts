/**
 * Signing requests against a real CA process: a user's own key made by
 * `openssl req`, the CSRs the CA must refuse, and the token-guarded hub route.
 */
import assert from "node:assert/strict";
import { peerName } from "@ztm/shared/peer_protocol";
import { Harness } from "../fixtures/harness.ts";
import {
  assertError,
  call,
  certificateText,
  derToPem,
  extendedKeyUsages,
  indexOfBytes,
  listCertificates,
  makeCsr,
  pemToDer,
  publicKeyOfCertificate,
  publicKeyOfKeyFile,
  verifiesAgainst,
} from "../fixtures/ca_helpers.ts";

const PEM_TYPE = "application/x-pem-file";

Deno.test("CA signs a P-256 CSR made by openssl req and the certificate carries its public key", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const { csr, keyPath } = await makeCsr(dir, "alice", { cn: "alice" });

  const reply = await call(`${ca.url}/api/certificates/alice`, { method: "POST", body: csr });
  assert.equal(reply.status, 201, reply.text);
  assert.equal(reply.headers.get("content-type"), PEM_TYPE);
  assert.match(reply.text, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  assert.doesNotMatch(reply.text, /PRIVATE KEY/);

  const caPem = (await call(`${ca.url}/api/certificates/ca`)).text;
  assert.ok(await verifiesAgainst(dir, caPem, reply.text));
  assert.equal(await publicKeyOfCertificate(reply.text), await publicKeyOfKeyFile(keyPath));
  const text = await certificateText(reply.text);
  assert.match(text, /Subject: CN = alice\n/);
  // Endpoints are TLS servers to each other (end-to-end tunnels), under their peer name only.
  assert.deepEqual(extendedKeyUsages(text), [
    "TLS Web Client Authentication",
    "TLS Web Server Authentication",
  ]);
  assert.match(text, new RegExp(`DNS:${peerName("alice").replaceAll(".", "\\.")}\n`));

  const stored = await call(`${ca.url}/api/certificates/alice`);
  assert.equal(stored.status, 200);
  assert.equal(stored.text, reply.text);
});

Deno.test("CA refuses a CSR whose common name is not the requested name", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const { csr } = await makeCsr(dir, "mallory", { cn: "mallory" });

  const message = assertError(
    await call(`${ca.url}/api/certificates/alice`, { method: "POST", body: csr }),
    400,
    "csr_name_mismatch",
  );
  assert.match(message, /"mallory"/);
  assertError(await call(`${ca.url}/api/certificates/alice`), 404, "unknown_certificate");
  assertError(await call(`${ca.url}/api/certificates/mallory`), 404, "unknown_certificate");
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("CA refuses a CSR whose signature does not verify", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const { csr } = await makeCsr(dir, "alice", { cn: "alice" });

  // Rewrite the signed subject "alice" to "alicx": still well-formed DER, but the signature no longer matches.
  const der = pemToDer(csr);
  const at = indexOfBytes(der, new TextEncoder().encode("alice"));
  assert.ok(at > 0);
  der[at + 4] = "x".charCodeAt(0);
  const tampered = derToPem(der, "CERTIFICATE REQUEST");

  const message = assertError(
    await call(`${ca.url}/api/certificates/alicx`, { method: "POST", body: tampered }),
    400,
    "bad_csr",
  );
  assert.match(message, /signature/);

  // A flipped bit in the signature value itself is refused too.
  const der2 = pemToDer(csr);
  der2[der2.length - 1] ^= 0x01;
  assertError(
    await call(`${ca.url}/api/certificates/alice`, {
      method: "POST",
      body: derToPem(der2, "CERTIFICATE REQUEST"),
    }),
    400,
    "bad_csr",
  );
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("CA refuses CSRs whose key is not ECDSA P-256", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  for (const key of ["rsa", "p384"] as const) {
    const { csr } = await makeCsr(dir, key, { cn: "alice", key });
    const message = assertError(
      await call(`${ca.url}/api/certificates/alice`, { method: "POST", body: csr }),
      400,
      "bad_csr",
    );
    assert.match(message, /P-256/);
  }
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("hub certificate route answers 401 without the CA token and issues nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const { csr } = await makeCsr(dir, "hub", { cn: "hub1", altNames: "DNS:hub.example.com" });
  const url = `${ca.url}/api/hub-certificates`;

  assertError(await call(url, { method: "POST", body: csr }), 401, "token_required");
  for (const authorization of ["Bearer wrong-token-0123456789", "Bearer", "Basic abc", ""]) {
    assertError(
      await call(url, { method: "POST", body: csr, headers: { authorization } }),
      401,
      "token_required",
    );
  }
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("hub certificate route signs a CSR with the token as a serverAuth-only certificate with its SANs", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const { csr, keyPath } = await makeCsr(dir, "hub", {
    cn: "hub1",
    altNames: "DNS:hub.example.com,IP:10.1.2.3,IP:::1",
  });

  const reply = await call(`${ca.url}/api/hub-certificates`, {
    method: "POST",
    body: csr,
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(reply.status, 201, reply.text);
  assert.equal(reply.headers.get("content-type"), PEM_TYPE);

  const caPem = (await call(`${ca.url}/api/certificates/ca`)).text;
  assert.ok(await verifiesAgainst(dir, caPem, reply.text));
  assert.equal(await publicKeyOfCertificate(reply.text), await publicKeyOfKeyFile(keyPath));
  const text = await certificateText(reply.text);
  assert.match(text, /Subject: CN = hub1\n/);
  assert.deepEqual(extendedKeyUsages(text), ["TLS Web Server Authentication"]);
  assert.match(text, /X509v3 Basic Constraints: critical\n\s*CA:FALSE/);
  const sans = /X509v3 Subject Alternative Name:[^\n]*\n\s*([^\n]*)/.exec(text)?.[1] ?? "";
  for (const name of ["DNS:localhost", "IP Address:127.0.0.1", "DNS:hub.example.com"]) {
    assert.ok(sans.split(", ").includes(name), `${name} missing from ${sans}`);
  }
  assert.ok(sans.includes("IP Address:10.1.2.3"), sans);
  assert.ok(/IP Address:0:0:0:0:0:0:0:1|IP Address:::1/.test(sans), sans);

  // A hub certificate is no user certificate: GET by name does not return it.
  assertError(await call(`${ca.url}/api/certificates/hub1`), 404, "unknown_certificate");
  const list = await listCertificates(ca.url);
  assert.deepEqual(list.map((c) => [c.name, c.role, c.revoked]), [["hub1", "hub", false]]);
});

Deno.test("hub certificate route refuses a CSR naming a bad host", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const { csr } = await makeCsr(dir, "hub", { cn: "hub1", altNames: "DNS:-bad_host.example" });
  const message = assertError(
    await call(`${ca.url}/api/hub-certificates`, {
      method: "POST",
      body: csr,
      headers: { authorization: `Bearer ${token}` },
    }),
    400,
    "bad_csr",
  );
  assert.match(message, /-bad_host\.example/);
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("user certificates are client and peer-name server certificates with CA:FALSE; only the CA certificate has CA:TRUE", async () => {
  await using h = new Harness();
  const ca = await h.startCa();

  const key = await call(`${ca.url}/api/certificates/root`, { method: "POST" });
  assert.equal(key.status, 201, key.text);
  const user = await certificateText((await call(`${ca.url}/api/certificates/root`)).text);
  assert.deepEqual(extendedKeyUsages(user), [
    "TLS Web Client Authentication",
    "TLS Web Server Authentication",
  ]);
  // The only name is the peer name under `.invalid`: no host name a hub or a public site uses.
  const sans = /X509v3 Subject Alternative Name:\s*\n\s*(.*)\n/.exec(user)?.[1];
  assert.equal(sans, `DNS:${peerName("root")}`);
  assert.match(user, /X509v3 Basic Constraints: critical\n\s*CA:FALSE/);
  assert.doesNotMatch(user, /CA:TRUE/);

  const caText = await certificateText((await call(`${ca.url}/api/certificates/ca`)).text);
  assert.match(caText, /X509v3 Basic Constraints: critical\n\s*CA:TRUE/);
  assert.match(caText, /Certificate Sign, CRL Sign/);
  assert.deepEqual(extendedKeyUsages(caText), []);
});
