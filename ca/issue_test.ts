/**
 * `checkName` and `Issuer` over a real store and CA key in a temp dir.
 */
import assert from "node:assert/strict";
import {
  altNamesOf,
  certificateRole,
  commonNameOf,
  extendedKeyUsagesOf,
  generateKeyPair,
  importPrivateKeyPem,
  parseCertificate,
  x509,
} from "@ztm/shared/certs";
import { peerName } from "@ztm/shared/peer_protocol";
import { checkName } from "./issue.ts";
import { openCa } from "./_fixture.ts";

/** A PEM CSR for `cn` with a new P-256 key, and optional SANs. */
async function csrFor(cn: string, altNames: x509.JsonGeneralName[] = []) {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: altNames.length ? [new x509.SubjectAlternativeNameExtension(altNames)] : [],
  });
  return { pem: csr.toString("pem"), keys };
}

Deno.test("checkName accepts 1 to 64 of A-Z a-z 0-9 . _ - not starting with . or -", () => {
  for (const ok of ["a", "root", "A.b_c-9", "_x", "9", "x".repeat(64), "cA1", "ca.", "a..b"]) {
    checkName(ok);
  }
  for (const bad of ["", ".x", "-x", "x".repeat(65), "a b", "ü", "名前", "a/b", "a\nb", "a:b"]) {
    assert.throws(() => checkName(bad), { name: "BadRequest", code: "bad_name" }, bad);
  }
});

Deno.test("checkName reserves ca in any case", () => {
  for (const name of ["ca", "CA", "Ca", "cA"]) {
    assert.throws(() => checkName(name), { code: "bad_name", message: /reserved/ });
  }
});

Deno.test("checkName quotes a long bad name only in part", () => {
  assert.throws(() => checkName("-" + "y".repeat(500)), (err: Error) => err.message.length < 200);
});

Deno.test("issueUser returns the only copy of a key that matches its client certificate", async () => {
  await using ca = await openCa();
  const { privateKeyPem, record } = await ca.issuer.issueUser("root");
  assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const cert = parseCertificate(record.certificate);
  assert.equal(commonNameOf(cert), "root");
  assert.equal(certificateRole(cert), "client");
  assert.ok(await cert.verify({ publicKey: ca.signingKey.certificate.publicKey }));

  // The key signs what the certificate's public key verifies.
  const key = await importPrivateKeyPem(privateKeyPem);
  const data = new TextEncoder().encode("hello");
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data);
  const pub = await cert.publicKey.export({ name: "ECDSA", namedCurve: "P-256" }, ["verify"]);
  assert.ok(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, data));

  assert.deepEqual(ca.store.liveUserCertificate("root"), record);
  assert.ok(ca.lines.some((l) => JSON.parse(l).msg === "certificate issued"));
  assert.ok(ca.lines.every((l) => !l.includes("PRIVATE KEY")));
});

Deno.test("a user certificate carries clientAuth, serverAuth and its peer name, and nothing else", async () => {
  await using ca = await openCa();
  const { record } = await ca.issuer.issueUser("alice");
  const cert = parseCertificate(record.certificate);
  assert.deepEqual(
    extendedKeyUsagesOf(cert).sort(),
    [
      x509.ExtendedKeyUsage.clientAuth,
      x509.ExtendedKeyUsage.serverAuth,
    ].sort(),
  );
  assert.deepEqual(altNamesOf(cert), [peerName("alice")]);
  assert.match(peerName("alice"), /\.user\.ztm\.invalid$/);
  assert.equal(certificateRole(cert), "client");
});

Deno.test("issueUser refuses a bad name and a taken name in any case", async () => {
  await using ca = await openCa();
  await assert.rejects(ca.issuer.issueUser("-x"), { code: "bad_name" });
  await ca.issuer.issueUser("root");
  await assert.rejects(ca.issuer.issueUser("ROOT"), { name: "Conflict", code: "name_taken" });
  assert.equal(ca.store.list().length, 1);
});

Deno.test("concurrent issueUser calls for one name make exactly one certificate", async () => {
  await using ca = await openCa();
  const results = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => ca.issuer.issueUser(i % 2 ? "root" : "Root")),
  );
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
  for (const r of results) {
    if (r.status === "rejected") assert.equal(r.reason.code, "name_taken");
  }
  assert.equal(ca.store.list().length, 1);
});

Deno.test("signUserCsr signs the requester's own key", async () => {
  await using ca = await openCa();
  const { pem, keys } = await csrFor("alice");
  const record = await ca.issuer.signUserCsr("alice", pem);
  const cert = parseCertificate(record.certificate);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  assert.deepEqual(new Uint8Array(cert.publicKey.rawData), spki);
  assert.equal(certificateRole(cert), "client");
  assert.equal(record.role, "user");
});

Deno.test("signUserCsr refuses a CSR for another name and stores nothing", async () => {
  await using ca = await openCa();
  const { pem } = await csrFor("mallory");
  await assert.rejects(ca.issuer.signUserCsr("alice", pem), {
    code: "csr_name_mismatch",
    status: 400,
  });
  // Names compare exactly: the CSR must carry the name as asked.
  const upper = await csrFor("Alice");
  await assert.rejects(ca.issuer.signUserCsr("alice", upper.pem), { code: "csr_name_mismatch" });
  await assert.rejects(ca.issuer.signUserCsr("alice", "garbage"), { code: "bad_csr" });
  assert.deepEqual(ca.store.list(), []);
});

Deno.test("signHubCsr makes a server certificate with the CSR's names plus localhost and 127.0.0.1", async () => {
  await using ca = await openCa();
  const { pem } = await csrFor("hub1", [
    { type: "dns", value: "hub.example.com" },
    { type: "ip", value: "10.0.0.7" },
  ]);
  const record = await ca.issuer.signHubCsr(pem);
  assert.equal(record.role, "hub");
  assert.equal(record.name, "hub1");
  const cert = parseCertificate(record.certificate);
  assert.equal(certificateRole(cert), "server");
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.deepEqual(
    san.names.items.map((n) => `${n.type}:${n.value}`).sort(),
    ["dns:hub.example.com", "dns:localhost", "ip:10.0.0.7", "ip:127.0.0.1"],
  );
  // A hub certificate does not take the name from users.
  await ca.issuer.issueUser("hub1");
  assert.ok(ca.lines.some((l) => JSON.parse(l).msg === "hub certificate issued"));
});

Deno.test("signHubCsr refuses bad host names and bad common names", async () => {
  await using ca = await openCa();
  for (
    const host of [
      "-bad.example",
      "bad_host.example",
      "a..b",
      "x".repeat(64) + ".example",
      // Endpoints' peer names live under .invalid: a hub must never be able to claim one.
      peerName("bob"),
      "x.invalid",
    ]
  ) {
    const { pem } = await csrFor("hub1", [{ type: "dns", value: host }]);
    await assert.rejects(ca.issuer.signHubCsr(pem), { code: "bad_csr" }, host);
  }
  await assert.rejects(ca.issuer.signHubCsr((await csrFor("ca")).pem), { code: "bad_name" });
  assert.deepEqual(ca.store.list(), []);
});
