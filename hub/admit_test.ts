/**
 * Admission over real TLS: what `admit` reads from a verified peer
 * certificate, which certificates it refuses and why (unverified, none, not a
 * user's, revoked, expired), and the per-fingerprint cache of certificate facts.
 */
import assert from "node:assert/strict";
import tls, { type TLSSocket } from "node:tls";
import {
  certificatePem,
  exportPrivateKeyPem,
  generateKeyPair,
  issueLeafCertificate,
  parseCertificate,
  type Serial,
  x509,
} from "@ztm/shared/certs";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { AdmissionCache, AdmissionRefused, admit, type Peer } from "./admit.ts";

interface Pem {
  certificate: string;
  privateKey: string;
}

/**
 * Runs `admit` on the server side of one TLS connection whose client presents
 * `client` (or nothing); TLS verifies the chain but lets an unverified peer
 * through, so that `admit` itself is what refuses it.
 */
async function admitOver(
  ca: TestCa,
  client: Pem | undefined,
  isRevoked: (serial: string) => boolean = () => false,
  cache?: AdmissionCache,
): Promise<Peer | AdmissionRefused> {
  const hub = await newLeaf(ca, { name: "hub", role: "server", altNames: ["localhost"] });
  let result!: Peer | AdmissionRefused;
  const sockets = new Set<TLSSocket>();
  const admitted = Promise.withResolvers<void>();
  const server = tls.createServer({
    key: hub.privateKey,
    cert: hub.certificate,
    ca: ca.pem,
    requestCert: true,
    rejectUnauthorized: false,
  }, (socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    try {
      result = admit(socket, isRevoked, cache);
    } catch (err) {
      if (!(err instanceof AdmissionRefused)) throw err;
      result = err;
    }
    admitted.resolve();
    socket.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: ca.pem,
    cert: client?.certificate,
    key: client?.privateKey,
  });
  socket.on("error", () => {});
  const timer = setTimeout(() => admitted.reject(new Error("no TLS session in 10 s")), 10_000);
  try {
    await admitted.promise;
  } finally {
    clearTimeout(timer);
    socket.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
  return result;
}

function refused(result: Peer | AdmissionRefused): AdmissionRefused {
  assert.ok(result instanceof AdmissionRefused, `admitted: ${JSON.stringify(result)}`);
  return result;
}

async function sha256Hex(pem: string): Promise<string> {
  const der = parseCertificate(pem).rawData;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", der)).toHex();
}

/**
 * A leaf certificate TLS accepts for a client (no extended key usage, or
 * clientAuth among others) but that may be no user's: `subject` and `usages` as given.
 */
async function oddLeaf(ca: TestCa, subject: string, usages: string[]): Promise<Pem> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "0123",
    subject,
    issuer: ca.certificate.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: usages.length ? [new x509.ExtendedKeyUsageExtension(usages, false)] : [],
  });
  return {
    certificate: certificatePem(cert),
    privateKey: await exportPrivateKeyPem(keys.privateKey),
  };
}

/** A user certificate with a chosen serial. */
async function userWithSerial(ca: TestCa, serial: string): Promise<Pem> {
  const keys = await generateKeyPair();
  const cert = await issueLeafCertificate(ca, {
    commonName: "alice",
    publicKey: keys.publicKey,
    role: "client",
    serial: serial as Serial,
  });
  return {
    certificate: certificatePem(cert),
    privateKey: await exportPrivateKeyPem(keys.privateKey),
  };
}

Deno.test("a user's verified certificate is admitted with its user, normalized serial, fingerprint, key and expiry", async () => {
  const ca = await newCa();
  const alice = await userWithSerial(ca, "00f1e2d3c4b5a697");
  const asked: string[] = [];
  const peer = await admitOver(ca, alice, (s) => {
    asked.push(s);
    return false;
  });
  assert.ok(!(peer instanceof AdmissionRefused), String(peer));
  const cert = parseCertificate(alice.certificate);
  assert.equal(peer.user, "alice");
  assert.equal(peer.serial, "f1e2d3c4b5a697");
  assert.deepEqual(asked, ["f1e2d3c4b5a697"], "the CRL is asked with the normalized serial");
  assert.equal(peer.fingerprint, await sha256Hex(alice.certificate));
  assert.deepEqual(peer.spki, new Uint8Array(cert.publicKey.rawData));
  assert.equal(peer.notAfter, cert.notAfter.getTime());
  assert.match(peer.address, /^127\.0\.0\.1:\d+$/);
  const both = await admitOver(ca, await newLeaf(ca, { name: "bob", role: "peer" }));
  assert.equal((both as Peer).user, "bob", "clientAuth with serverAuth is a user too");
});

Deno.test("admission refuses as 'certificate' one unverified, none, one that is no user's, one without a name", async () => {
  const ca = await newCa();
  const stranger = await newLeaf(await newCa(), { name: "mallory" });
  const foreign = refused(await admitOver(ca, stranger));
  assert.match(foreign.message, /^certificate not verified: /);
  assert.equal(foreign.reason, "certificate");
  const none = refused(await admitOver(ca, undefined));
  assert.match(none.message, /^certificate not verified: /);
  const client = x509.ExtendedKeyUsage.clientAuth;
  const noUsage = refused(await admitOver(ca, await oddLeaf(ca, "CN=alice", [])));
  assert.equal(noUsage.message, "certificate role is unknown, not a user");
  assert.equal(noUsage.reason, "certificate");
  const signer = [client, x509.ExtendedKeyUsage.codeSigning];
  const extra = refused(await admitOver(ca, await oddLeaf(ca, "CN=alice", signer)));
  assert.equal(extra.message, "certificate role is unknown, not a user");
  const nameless = refused(await admitOver(ca, await oddLeaf(ca, "O=ztm", [client])));
  assert.equal(nameless.message, "certificate has no common name");
});

Deno.test("admission refuses a revoked certificate as 'revoked' and an expired one as 'expired'", async () => {
  const ca = await newCa();
  const alice = await newLeaf(ca, { name: "alice" });
  const serial = parseCertificate(alice.certificate).serialNumber;
  const revoked = refused(await admitOver(ca, alice, () => true));
  assert.equal(revoked.reason, "revoked");
  assert.match(revoked.message, /is revoked$/);
  // TLS checks expiry only at the handshake; admission checks it again (facts from the cache here).
  const cache = new AdmissionCache();
  const fingerprint = await sha256Hex(alice.certificate);
  cache.facts(fingerprint, () => ({ user: "alice", serial, spki: new Uint8Array(), notAfter: 0 }));
  const expired = refused(await admitOver(ca, alice, () => false, cache));
  assert.equal(expired.reason, "expired");
  assert.match(expired.message, /has expired$/);
});

Deno.test("admission reads each certificate once through the cache, and refusals are cached too", async () => {
  const ca = await newCa();
  const alice = await newLeaf(ca, { name: "alice" });
  const cache = new AdmissionCache();
  const first = await admitOver(ca, alice, () => false, cache);
  assert.equal((first as Peer).user, "alice");
  assert.equal(cache.size, 1);
  // A cached fact stands for the certificate: a different user here proves the cache was read.
  const fingerprint = await sha256Hex(alice.certificate);
  let reads = 0;
  cache.facts(fingerprint, () => {
    reads++;
    return { refused: "unreachable" };
  });
  assert.equal(reads, 0, "a known fingerprint is not read again");
  const again = await admitOver(ca, alice, () => false, cache);
  assert.equal((again as Peer).user, "alice");
  const nameless = await oddLeaf(ca, "O=ztm", [x509.ExtendedKeyUsage.clientAuth]);
  refused(await admitOver(ca, nameless, () => false, cache));
  assert.equal(cache.size, 2);
  const revoked = refused(await admitOver(ca, alice, () => true, cache));
  assert.equal(revoked.reason, "revoked", "revocation is asked every time, never cached");
});

Deno.test("the admission cache forgets its oldest certificate beyond its size", () => {
  const cache = new AdmissionCache(2);
  const reads: string[] = [];
  const read = (fp: string) => () => {
    reads.push(fp);
    return { refused: fp };
  };
  for (const fp of ["a", "b", "a", "c", "b", "a"]) cache.facts(fp, read(fp));
  assert.deepEqual(reads, ["a", "b", "c", "a"], "a then c pushed out the oldest, a");
  assert.equal(cache.size, 2);
  assert.deepEqual(cache.facts("c", read("c")), { refused: "c" });
});
