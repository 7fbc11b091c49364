/**
 * `verifyCrl` on CRLs past asn1js's 10,000-node limit and on hostile bytes:
 * every malformed, truncated or altered CRL is refused with a plain `Error`
 * (never a crash, never a different exception), and one of another CA, a
 * critical extension, or a bad signature is refused naming why. The
 * cross-process tests are in `tests/ca/revocation_scale_test.ts`.
 */
import assert from "node:assert/strict";
import {
  createCaCertificate,
  createCrl,
  generateKeyPair,
  randomSerial,
  type Serial,
  x509,
} from "./certs.ts";
import { normalizeSerial, verifyCrl } from "./crl.ts";
import { type Bytes, der, derOid, DerReader, encodingOf, TAG } from "./der.ts";

async function makeCa() {
  const keys = await generateKeyPair();
  const certificate = await createCaCertificate(keys);
  return { certificate, privateKey: keys.privateKey, pem: certificate.toString("pem") };
}

const pemOf = (bytes: Uint8Array) =>
  `-----BEGIN X509 CRL-----\n${bytes.toBase64()}\n-----END X509 CRL-----\n`;
const derOf = (pem: string): Bytes =>
  Uint8Array.fromBase64(pem.split("-----")[2].replace(/\s+/g, ""));

Deno.test("verifyCrl reads a CRL of 20,000 entries (past asn1js's node limit) with every serial", async () => {
  const ca = await makeCa();
  const serials = Array.from({ length: 20_000 }, () => randomSerial());
  const pem = await createCrl(
    ca,
    serials.map((serial, i) => ({ serial, revokedAt: new Date(1.7e12 + i * 1000) })),
    { number: 41 },
  );
  assert.throws(() => new x509.X509Crl(pem), "asn1js still parses it: the limit moved");
  const crl = await verifyCrl(pem, ca.pem);
  assert.equal(crl.number, 41);
  assert.equal(crl.serials.size, serials.length);
  for (const s of serials) assert.ok(crl.serials.has(normalizeSerial(s)), s);
});

Deno.test("verifyCrl refuses every altered, truncated or garbled CRL with a plain Error", async () => {
  const ca = await makeCa();
  const good = derOf(
    await createCrl(
      ca,
      ["01", "7f", "80", "00ff", "1234567890abcdef"].map((s) => ({
        serial: s as Serial,
        revokedAt: new Date(),
      })),
      { number: 3 },
    ),
  );
  assert.equal((await verifyCrl(pemOf(good), ca.pem)).serials.size, 5);
  const bad: Uint8Array[] = [];
  for (let i = 0; i < good.length; i++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const m = good.slice();
      m[i] ^= x;
      bad.push(m);
    }
  }
  for (let n = 0; n < good.length; n++) bad.push(good.subarray(0, n));
  bad.push(new Uint8Array([...good, 0]));
  // Lengths that claim more than there is, indefinite, non-minimal and 5-byte lengths.
  for (
    const head of [[0x30, 0x80], [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff], [0x30, 0x81, 0x05], [
      0x30,
      0x85,
      1,
      0,
      0,
      0,
      0,
    ]]
  ) {
    bad.push(new Uint8Array([...head, ...good.subarray(4)]));
  }
  for (const bytes of bad) {
    await assert.rejects(verifyCrl(pemOf(bytes), ca.pem), (err: unknown) => {
      assert.equal((err as Error).constructor, Error, String(err));
      return true;
    });
  }
  for (const text of ["", "garbage", "-----BEGIN X509 CRL-----\n!!!\n-----END X509 CRL-----\n"]) {
    await assert.rejects(verifyCrl(text, ca.pem), /CRL does not parse/);
  }
});

Deno.test("verifyCrl refuses another CA's CRL and a CRL with a critical extension", async () => {
  const ca = await makeCa();
  const other = await makeCa();
  const pem = await createCrl(other, [], { number: 1 });
  await assert.rejects(verifyCrl(pem, ca.pem), /signature does not verify/);

  // A CA-signed CRL with a critical extension the mesh does not know (a delta CRL indicator).
  const list = derOf(await createCrl(ca, [], { number: 9 }));
  const tbs = new DerReader(list, 0).next(TAG.SEQUENCE);
  const fields = DerReader.inside(list, DerReader.inside(list, tbs).next(TAG.SEQUENCE));
  const kept: Bytes[] = [];
  let extensions: Bytes | undefined;
  while (!fields.done) {
    const el = fields.next();
    if (el.tag === TAG.CONTEXT_0) {
      const seq = DerReader.inside(list, el).next(TAG.SEQUENCE);
      extensions = list.subarray(seq.content, seq.end);
    } else kept.push(encodingOf(list, el));
  }
  assert.ok(extensions);
  const delta = der(
    TAG.SEQUENCE,
    derOid("2.5.29.27"),
    der(TAG.BOOLEAN, Uint8Array.of(0xff)),
    der(TAG.OCTET_STRING, der(TAG.INTEGER, Uint8Array.of(1))),
  );
  const newTbs = der(
    TAG.SEQUENCE,
    ...kept,
    der(TAG.CONTEXT_0, der(TAG.SEQUENCE, extensions, delta)),
  );
  const sig = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, ca.privateKey, newTbs),
  );
  const asInt = (b: Bytes) =>
    b[0] & 0x80 ? der(TAG.INTEGER, Uint8Array.of(0), b) : der(TAG.INTEGER, b);
  const signed = der(
    TAG.SEQUENCE,
    newTbs,
    der(TAG.SEQUENCE, derOid("1.2.840.10045.4.3.2")),
    der(
      TAG.BIT_STRING,
      Uint8Array.of(0),
      der(TAG.SEQUENCE, asInt(sig.subarray(0, 32)), asInt(sig.subarray(32))),
    ),
  );
  await assert.rejects(verifyCrl(pemOf(signed), ca.pem), /critical CRL extension/);
});
