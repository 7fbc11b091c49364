/**
 * Certificates and keys, checked with WebCrypto and with the real openssl:
 * key PEM round trips, the CA and leaf certificates and their roles, CSR
 * checks, serials and fingerprints, and CRLs that openssl reads and verifies.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  altNamesOf,
  certificatePem,
  certificateRole,
  checkCsr,
  commonNameOf,
  createCaCertificate,
  createCrl,
  exportPrivateKeyPem,
  fingerprintOf,
  generateKeyPair,
  importPrivateKeyPem,
  isIpAddress,
  issueLeafCertificate,
  issuerAmong,
  keyPairOfPem,
  parseCertificate,
  parseCertificates,
  randomSerial,
  type Serial,
  serialOf,
  subjectAltNames,
  x509,
} from "./certs.ts";
import { BadRequest } from "./errors.ts";
import { run } from "../tests/fixtures/harness.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";

const SIGNING = { name: "ECDSA", hash: "SHA-256" };

/** Runs openssl; throws with its stderr on failure unless `allowFail`. */
function openssl(args: string[], stdin?: string, allowFail = false) {
  return run("openssl", args, { stdin, allowFail });
}

/** A CA key and certificate for tests. */
async function makeCa(now?: Date) {
  const keys = await generateKeyPair();
  const certificate = await createCaCertificate(keys, { now });
  return { keys, certificate, privateKey: keys.privateKey };
}

/** Key pairs of the kinds ztm refuses: RSA 2048 and ECDSA P-384. */
async function otherKeys(): Promise<{ rsa: CryptoKeyPair; p384: CryptoKeyPair }> {
  const rsa = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const p384 = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
    "sign",
    "verify",
  ]);
  return { rsa, p384 };
}

Deno.test("a private key survives export to PKCS#8 PEM and import, and openssl reads it as P-256", async () => {
  const keys = await generateKeyPair();
  const pem = await exportPrivateKeyPem(keys.privateKey);
  assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
  const imported = await importPrivateKeyPem(pem);
  const data = new TextEncoder().encode("mesh");
  const sig = await crypto.subtle.sign(SIGNING, imported, data);
  assert.ok(await crypto.subtle.verify(SIGNING, keys.publicKey, sig, data));
  const text = (await openssl(["pkey", "-noout", "-text"], pem)).stdout;
  assert.match(text, /NIST CURVE: P-256|ASN1 OID: prime256v1/);
});

Deno.test("importPrivateKeyPem refuses garbage, a certificate and non-P-256 keys with bad_private_key", async () => {
  const ca = await makeCa();
  const { rsa, p384 } = await otherKeys();
  const bad = [
    "",
    "hello",
    certificatePem(ca.certificate),
    await exportPrivateKeyPem(rsa.privateKey),
    await exportPrivateKeyPem(p384.privateKey),
  ];
  for (const pem of bad) {
    await assert.rejects(importPrivateKeyPem(pem), { name: "BadRequest", code: "bad_private_key" });
  }
});

Deno.test("the CA certificate is self-signed, CA:true, valid 10 years, and openssl agrees", async () => {
  const now = new Date("2030-06-01T00:00:00Z");
  const ca = await makeCa(now);
  const cert = ca.certificate;
  assert.equal(certificateRole(cert), "ca");
  assert.equal(commonNameOf(cert), "ztm mesh CA");
  assert.equal(cert.subject, cert.issuer);
  assert.ok(await cert.verify({ signatureOnly: true }));
  assert.equal(cert.notBefore.getTime(), now.getTime() - 60_000);
  assert.equal(cert.notAfter.getTime(), now.getTime() + 10 * 365 * 24 * 3600 * 1000);

  const pem = certificatePem(cert);
  assert.match(pem, /\n$/);
  const text = (await openssl(["x509", "-noout", "-text"], pem)).stdout;
  assert.match(text, /Basic Constraints: critical\n\s*CA:TRUE/);
  assert.match(text, /Key Usage: critical\n\s*Certificate Sign, CRL Sign/);
  assert.match(text, /ecdsa-with-SHA256/);
  assert.doesNotMatch(text, /Extended Key Usage/);
});

Deno.test("leaf certificates are CA:false with exactly one extended key usage for their role", async () => {
  const ca = await makeCa();
  const userKeys = await generateKeyPair();
  const publicKey = userKeys.publicKey;
  const user = await issueLeafCertificate(ca, { commonName: "root", publicKey, role: "client" });
  const hub = await issueLeafCertificate(ca, {
    commonName: "hub1",
    publicKey,
    role: "server",
    altNames: ["hub.example.com", "10.0.0.1", "::1"],
    days: 30,
  });
  assert.equal(certificateRole(user), "client");
  assert.equal(certificateRole(hub), "server");
  assert.deepEqual(altNamesOf(user), []);
  assert.deepEqual(altNamesOf(hub), ["hub.example.com", "10.0.0.1", "::1"]);
  for (const leaf of [user, hub]) {
    assert.ok(await leaf.verify({ publicKey: ca.certificate.publicKey }));
    assert.equal(leaf.issuer, ca.certificate.subject);
    assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  }
  assert.equal(hub.notAfter.getTime() - hub.notBefore.getTime(), 30 * 24 * 3600 * 1000 + 60_000);

  await using dir = await tempDir("ztm-certs-");
  const caPath = join(dir.path, "ca.crt");
  await Deno.writeTextFile(caPath, certificatePem(ca.certificate));
  for (const [leaf, purpose] of [[user, "sslclient"], [hub, "sslserver"]] as const) {
    const path = join(dir.path, `${purpose}.crt`);
    await Deno.writeTextFile(path, certificatePem(leaf));
    const ok = await openssl(["verify", "-CAfile", caPath, "-purpose", purpose, path]);
    assert.match(ok.stdout, /: OK/);
  }
  // The roles do not stand in for each other.
  const wrong = join(dir.path, "sslclient.crt");
  const misused = await openssl(
    ["verify", "-CAfile", caPath, "-purpose", "sslserver", wrong],
    undefined,
    true,
  );
  assert.match(misused.stdout + misused.stderr, /unsuitable certificate purpose/);
  // And a leaf cannot act as a CA: what its key signs does not chain.
  const sub = await issueLeafCertificate(
    { certificate: user, privateKey: userKeys.privateKey },
    { commonName: "child", publicKey: (await generateKeyPair()).publicKey, role: "client" },
  );
  const chain = join(dir.path, "chain.crt");
  const subPath = join(dir.path, "sub.crt");
  await Deno.writeTextFile(chain, certificatePem(ca.certificate) + certificatePem(user));
  await Deno.writeTextFile(subPath, certificatePem(sub));
  const refused = await openssl(["verify", "-CAfile", chain, subPath], undefined, true);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stdout + refused.stderr, /invalid CA certificate/);
});

Deno.test("certificateRole calls clientAuth with serverAuth a user, and no or other extended key usages unknown", async () => {
  const ca = await makeCa();
  const keys = await generateKeyPair();
  const make = (extensions: x509.Extension[]) =>
    x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: "CN=odd",
      issuer: ca.certificate.subject,
      notBefore: new Date(0),
      notAfter: new Date(1e12),
      signingAlgorithm: SIGNING,
      publicKey: keys.publicKey,
      signingKey: ca.privateKey,
      extensions,
    });
  const both = await make([
    new x509.ExtendedKeyUsageExtension([
      x509.ExtendedKeyUsage.clientAuth,
      x509.ExtendedKeyUsage.serverAuth,
    ]),
  ]);
  const none = await make([]);
  const codeSigning = await make([
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning]),
  ]);
  // Users carry both since protocol 2 (endpoints are TLS servers to each other); hubs only serverAuth.
  assert.equal(certificateRole(both), "client");
  const serverAndSigning = await make([
    new x509.ExtendedKeyUsageExtension([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.codeSigning,
    ]),
  ]);
  assert.equal(certificateRole(serverAndSigning), "unknown");
  assert.equal(certificateRole(none), "unknown");
  assert.equal(certificateRole(codeSigning), "unknown");
});

Deno.test("random serials are 128-bit, positive, distinct, and serialOf reads them back as issued", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const s = randomSerial();
    assert.match(s, /^[0-7][0-9a-f]{31}$/);
    assert.notEqual(s.slice(0, 2), "00");
    seen.add(s);
  }
  assert.equal(seen.size, 200);

  const ca = await makeCa();
  const { publicKey } = await generateKeyPair();
  for (const serial of ["7f00000000000000000000000000000a", "0100000000000000000000000000abcd"]) {
    const cert = await issueLeafCertificate(ca, {
      commonName: "s",
      publicKey,
      role: "client",
      serial: serial as Serial,
    });
    assert.equal(serialOf(cert), serial.replace(/^0+/, ""));
    const printed = (await openssl(["x509", "-noout", "-serial"], certificatePem(cert))).stdout;
    assert.equal(printed.trim(), `serial=${serial.toUpperCase()}`);
  }
});

Deno.test("fingerprintOf is the SHA-256 fingerprint openssl prints", async () => {
  const ca = await makeCa();
  const fp = await fingerprintOf(ca.certificate);
  const out = (await openssl(
    ["x509", "-noout", "-fingerprint", "-sha256"],
    certificatePem(ca.certificate),
  )).stdout;
  assert.equal(fp, out.trim().split("=")[1].replaceAll(":", "").toLowerCase());
});

Deno.test("parseCertificate refuses garbage with bad_certificate", () => {
  for (const pem of ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]) {
    assert.throws(() => parseCertificate(pem), { name: "BadRequest", code: "bad_certificate" });
  }
});

Deno.test("isIpAddress tells literal addresses from host names", () => {
  for (const ip of ["127.0.0.1", "10.1.2.3", "::1", "fe80::1", "2001:db8::8a2e:370:7334"]) {
    assert.ok(isIpAddress(ip), ip);
  }
  for (const host of ["localhost", "hub.example.com", "1.2.3", "a:b:c:g", ""]) {
    assert.ok(!isIpAddress(host), host);
  }
});

/** A PEM CSR for `cn` signed by `keys` (a new P-256 pair by default). */
async function csr(cn: string | undefined, opts: { keys?: CryptoKeyPair; sans?: string[] } = {}) {
  const keys = opts.keys ?? await generateKeyPair();
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name: cn === undefined ? "O=nobody" : `CN=${cn}`,
    keys,
    signingAlgorithm: keys.privateKey.algorithm.name === "ECDSA"
      ? SIGNING
      : keys.privateKey.algorithm,
    extensions: opts.sans ? [subjectAltNames(opts.sans)] : [],
  });
  return req.toString("pem");
}

Deno.test("checkCsr returns the name, key and SANs of a well-signed P-256 request", async () => {
  const keys = await generateKeyPair();
  const checked = await checkCsr(await csr("hub1", { keys, sans: ["hub.example", "10.0.0.2"] }));
  assert.equal(checked.commonName, "hub1");
  assert.deepEqual(checked.altNames, ["hub.example", "10.0.0.2"]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  assert.deepEqual(new Uint8Array(checked.publicKey.rawData), spki);
});

Deno.test("checkCsr refuses garbage, bad signatures, other curves, RSA and a missing CN with bad_csr", async () => {
  const good = await csr("alice");
  const der = x509.PemConverter.decodeFirst(good);
  const tampered = new Uint8Array(der);
  tampered[tampered.length - 1] ^= 1;
  const { rsa, p384 } = await otherKeys();
  const cases: [string, RegExp][] = [
    ["", /not a PEM certificate signing request/],
    ["-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", /not a PEM/],
    [x509.PemConverter.encode(tampered.buffer, "CERTIFICATE REQUEST"), /signature does not verify/],
    [await csr("alice", { keys: rsa as CryptoKeyPair }), /ECDSA P-256/],
    [await csr("alice", { keys: p384 as CryptoKeyPair }), /ECDSA P-256/],
    [await csr(undefined), /no subject common name/],
  ];
  for (const [pem, message] of cases) {
    await assert.rejects(checkCsr(pem), { name: "BadRequest", code: "bad_csr", message }, pem);
  }
});

Deno.test("createCrl makes a CRL that openssl verifies against the CA and that lists every serial", async () => {
  const ca = await makeCa();
  const serials = ["1abc", "7fffffffffffffffffffffffffffffff", "0100000000000000000000000000000f"];
  const revokedAt = new Date("2031-02-03T04:05:06Z");
  const pem = await createCrl(
    ca,
    serials.map((s) => ({ serial: s as Serial, revokedAt })),
    { number: 300, thisUpdate: new Date("2031-02-03T05:00:00Z") },
  );
  assert.match(pem, /^-----BEGIN X509 CRL-----\n[\s\S]+-----END X509 CRL-----\n$/);

  await using dir = await tempDir("ztm-certs-");
  const caPath = join(dir.path, "ca.crt");
  const crlPath = join(dir.path, "crl.pem");
  await Deno.writeTextFile(caPath, certificatePem(ca.certificate));
  await Deno.writeTextFile(crlPath, pem);
  const verified = await openssl(["crl", "-in", crlPath, "-noout", "-CAfile", caPath]);
  assert.match(verified.stdout + verified.stderr, /verify OK/);
  const text = (await openssl(["crl", "-in", crlPath, "-noout", "-text"])).stdout;
  assert.match(text, /X509v3 CRL Number: \n\s*300\n/);
  assert.match(text, /Last Update: Feb {2}3 05:00:00 2031 GMT/);
  assert.match(text, /Next Update: Feb 10 05:00:00 2031 GMT/);
  const listed = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) =>
    m[1].replace(/^0+/, "").toLowerCase()
  );
  assert.deepEqual(listed, serials.map((s) => s.replace(/^0+/, "")));

  // An empty CRL is valid too, and a CRL from another CA does not verify.
  const other = await makeCa();
  await Deno.writeTextFile(crlPath, await createCrl(other, [], { number: 1 }));
  const out = await openssl(["crl", "-in", crlPath, "-noout", "-CAfile", caPath], undefined, true);
  assert.doesNotMatch(out.stdout + out.stderr, /verify OK/);
});

Deno.test("parseCertificates reads every certificate of a bundle in order, and issuerAmong finds the signer", async () => {
  const one = await generateKeyPair();
  const two = await generateKeyPair();
  const caOne = await createCaCertificate(one, { name: "CA one" });
  const caTwo = await createCaCertificate(two, { name: "CA two" });
  const leafKeys = await generateKeyPair();
  const leaf = await issueLeafCertificate({ certificate: caTwo, privateKey: two.privateKey }, {
    commonName: "alice",
    publicKey: leafKeys.publicKey,
    role: "peer",
  });
  const bundle = certificatePem(caOne) + certificatePem(caTwo);
  const cas = parseCertificates(bundle);
  assert.deepEqual(cas.map((c) => c.subject), ["CN=CA one", "CN=CA two"]);
  assert.equal((await issuerAmong(leaf, cas))?.subject, "CN=CA two");
  assert.equal(await issuerAmong(leaf, [caOne]), undefined);
  assert.throws(() => parseCertificates("no certificate here"), BadRequest);
});

Deno.test("keyPairOfPem gives the key pair of a PKCS#8 P-256 key; a bad key is bad_private_key", async () => {
  const spkiHex = async (key: CryptoKey) =>
    new Uint8Array(await crypto.subtle.exportKey("spki", key)).toHex();
  const keys = await generateKeyPair();
  const pair = await keyPairOfPem(await exportPrivateKeyPem(keys.privateKey));
  assert.equal(await spkiHex(pair.publicKey), await spkiHex(keys.publicKey));
  const data = new TextEncoder().encode("ztm");
  const algorithm = { name: "ECDSA", hash: "SHA-256" };
  const signature = await crypto.subtle.sign(algorithm, pair.privateKey, data);
  assert.ok(await crypto.subtle.verify(algorithm, keys.publicKey, signature, data));
  await assert.rejects(keyPairOfPem("not a key"), BadRequest);
});
