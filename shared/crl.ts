/**
 * Checking a CA-signed CRL: the hub verifies what it fetches from the CA, and
 * agents verify what the hub hands them, so neither has to trust the channel.
 *
 * The CRL is read with the strict, bounded DER reader of `der.ts`, not with
 * `@peculiar/x509`: asn1js refuses DER of more than 10,000 nodes (~1,250
 * entries), which silently stopped revocation at that size. Order of checks:
 * the outer structure is walked (no entries yet), the signature over the raw
 * `tbsCertList` bytes is verified with WebCrypto against the CA's key, and
 * only then are the fields and entries read — so bytes the CA did not sign
 * never reach the entry scan. A CRL of 100,000 entries verifies in well under
 * a second (`deno task bench:revoke`).
 */
import { CRL_NUMBER, ECDSA_WITH_SHA256, KEY_ALGORITHM, parseCertificates } from "./certs.ts";
import {
  type Bytes,
  certificateSubjectDer,
  checkInteger,
  contentOf,
  DerError,
  derOid,
  DerReader,
  encodingOf,
  readSmallInteger,
  readTime,
  TAG,
  toHex,
} from "./der.ts";

/** Largest CRL accepted, DER bytes (~400,000 entries of 128-bit serials). */
export const MAX_CRL_BYTES = 16 * 1024 * 1024;

/** A CRL whose signature checked out against the mesh CA. */
export interface VerifiedCrl {
  pem: string;
  /** cRLNumber, 0 if absent. */
  number: number;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials, lower-case hex without leading zeros. */
  serials: Set<string>;
}

/** Normalises a serial for comparison: lower-case hex, no separators or leading zeros. */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/[^0-9a-f]/g, "").replace(/^0+(?=.)/, "");
}

const SIGNATURE_ALGORITHM = derOid(ECDSA_WITH_SHA256);

/**
 * Parses `pem` and verifies it was signed by `caPem`. Throws an `Error` naming
 * what failed (structure, issuer, signature, a critical extension it does not
 * know); never anything else, whatever the bytes.
 */
export async function verifyCrl(pem: string, caPem: string): Promise<VerifiedCrl> {
  // A bundle (the old and the new CA during a rotation): the CRL of either verifies.
  const cas = parseCertificates(caPem);
  const bytes = pemBytes(pem);
  let signed: { tbs: Bytes; signature: Bytes };
  try {
    signed = readOuter(bytes);
  } catch (err) {
    throw new Error(`CRL does not parse: ${(err as Error).message}`, { cause: err });
  }
  let ca: (typeof cas)[number] | undefined;
  for (const candidate of cas) {
    const key = await crypto.subtle.importKey(
      "spki",
      candidate.publicKey.rawData,
      KEY_ALGORITHM,
      false,
      ["verify"],
    );
    const ok = await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      signed.signature,
      signed.tbs,
    ).catch(() => false);
    if (ok) {
      ca = candidate;
      break;
    }
  }
  if (!ca) throw new Error("CRL signature does not verify against the mesh CA");
  try {
    return { pem, ...readTbs(signed.tbs, certificateSubjectDer(new Uint8Array(ca.rawData))) };
  } catch (err) {
    if (err instanceof CrlRefused) throw err;
    throw new Error(`CRL does not parse: ${(err as Error).message}`, { cause: err });
  }
}

class CrlRefused extends Error {}

const PEM_BEGIN = "-----BEGIN X509 CRL-----";
const PEM_END = "-----END X509 CRL-----";

/** The DER inside the first `X509 CRL` PEM block of `pem`. */
function pemBytes(pem: string): Bytes {
  if (typeof pem !== "string" || pem.length > MAX_CRL_BYTES * 4 / 3 + 4096) {
    throw new Error("CRL is too large or not text");
  }
  const begin = pem.indexOf(PEM_BEGIN);
  const end = begin < 0 ? -1 : pem.indexOf(PEM_END, begin);
  if (end < 0) throw new Error("CRL does not parse: no X509 CRL PEM block");
  try {
    // fromBase64 skips ASCII whitespace (the line breaks) and refuses anything else.
    return Uint8Array.fromBase64(pem.slice(begin + PEM_BEGIN.length, end));
  } catch (err) {
    throw new Error("CRL does not parse: bad base64", { cause: err });
  }
}

/** CertificateList: the tbsCertList bytes and the signature as WebCrypto wants it (r‖s). */
function readOuter(bytes: Bytes): { tbs: Bytes; signature: Bytes } {
  const top = new DerReader(bytes);
  const list = top.next(TAG.SEQUENCE, "CertificateList");
  top.finish("CertificateList");
  const r = DerReader.inside(bytes, list);
  const tbs = r.next(TAG.SEQUENCE, "tbsCertList");
  const alg = r.next(TAG.SEQUENCE, "signatureAlgorithm");
  if (!equalBytes(contentOf(bytes, alg), SIGNATURE_ALGORITHM)) {
    throw new DerError("signatureAlgorithm is not ecdsa-with-SHA256");
  }
  const bits = contentOf(bytes, r.next(TAG.BIT_STRING, "signatureValue"));
  r.finish("CertificateList");
  if (bits.length < 1 || bits[0] !== 0) throw new DerError("signatureValue: unused bits");
  const sig = new DerReader(bits, 1);
  const seq = sig.next(TAG.SEQUENCE, "ECDSA signature");
  sig.finish("ECDSA signature");
  const rs = DerReader.inside(bits, seq);
  const raw = new Uint8Array(64);
  for (const [i, what] of [[0, "r"], [32, "s"]] as const) {
    const v = contentOf(bits, rs.next(TAG.INTEGER, `signature ${what}`));
    if (checkInteger(v, `signature ${what}`)) throw new DerError(`signature ${what}: negative`);
    const trimmed = v[0] === 0 ? v.subarray(1) : v;
    if (trimmed.length > 32) throw new DerError(`signature ${what}: too long`);
    raw.set(trimmed, i + 32 - trimmed.length);
  }
  rs.finish("ECDSA signature");
  return { tbs: encodingOf(bytes, tbs), signature: raw };
}

/** The fields of a signed tbsCertList; its issuer must be `issuer` (DER). */
function readTbs(tbs: Bytes, issuer: Bytes): Omit<VerifiedCrl, "pem"> {
  const r = DerReader.inside(tbs, new DerReader(tbs).next(TAG.SEQUENCE, "tbsCertList"));
  const version = r.optional(TAG.INTEGER, "version");
  if (version && readSmallInteger(contentOf(tbs, version), "version") !== 1) {
    throw new DerError("version is not v2");
  }
  const alg = r.next(TAG.SEQUENCE, "signature");
  if (!equalBytes(contentOf(tbs, alg), SIGNATURE_ALGORITHM)) {
    throw new DerError("signature is not ecdsa-with-SHA256");
  }
  if (!equalBytes(encodingOf(tbs, r.next(TAG.SEQUENCE, "issuer")), issuer)) {
    throw new CrlRefused("CRL was not issued by the mesh CA");
  }
  const thisUpdate = readTime(tbs, r.next(undefined, "thisUpdate"), "thisUpdate");
  const tag = r.peekTag();
  const nextUpdate = tag === TAG.UTC_TIME || tag === TAG.GENERALIZED_TIME
    ? readTime(tbs, r.next(undefined, "nextUpdate"), "nextUpdate")
    : undefined;
  const serials = new Set<string>();
  const list = r.optional(TAG.SEQUENCE, "revokedCertificates");
  if (list) scanEntries(tbs, list.content, list.end, serials);
  let number = 0;
  const exts = r.optional(TAG.CONTEXT_0, "crlExtensions");
  if (exts) {
    const outer = DerReader.inside(tbs, exts);
    const seq = outer.next(TAG.SEQUENCE, "crlExtensions");
    outer.finish("crlExtensions");
    const found = readExtensions(tbs, seq, "CRL");
    const value = found.get(CRL_NUMBER_OID);
    if (value) {
      const v = new DerReader(value);
      number = readSmallInteger(contentOf(value, v.next(TAG.INTEGER, "cRLNumber")), "cRLNumber");
      v.finish("cRLNumber");
    }
  }
  r.finish("tbsCertList");
  return { number, thisUpdate, nextUpdate, serials };
}

const CRL_NUMBER_OID = toHex(derOid(CRL_NUMBER));

/**
 * Reads an Extensions SEQUENCE; returns extnValue by OID (hex of its DER).
 * A critical extension refuses the CRL: RFC 5280 says a CRL with one that is
 * not understood must not be used (a delta CRL or a partial one, say).
 */
function readExtensions(
  bytes: Bytes,
  seq: { content: number; end: number; tag: number; start: number },
  where: string,
): Map<string, Bytes> {
  const out = new Map<string, Bytes>();
  const r = DerReader.inside(bytes, seq);
  while (!r.done) {
    const ext = DerReader.inside(bytes, r.next(TAG.SEQUENCE, `${where} extension`));
    const oid = toHex(encodingOf(bytes, ext.next(TAG.OID, `${where} extension id`)));
    const critical = ext.optional(TAG.BOOLEAN, `${where} extension critical`);
    if (critical && contentOf(bytes, critical)[0] !== 0) {
      throw new CrlRefused(`CRL has a critical ${where} extension the mesh does not know`);
    }
    const value = contentOf(bytes, ext.next(TAG.OCTET_STRING, `${where} extension value`));
    ext.finish(`${where} extension`);
    if (out.has(oid)) throw new DerError(`${where} extension listed twice`);
    out.set(oid, value);
  }
  return out;
}

/**
 * Reads every revokedCertificates entry between `start` and `end` into
 * `serials`. The same strict rules as `DerReader`, inlined without an object
 * per element: this loop runs once per revoked certificate (100,000 and more).
 */
function scanEntries(b: Bytes, start: number, end: number, serials: Set<string>): void {
  let p = start;
  while (p < end) {
    const entryEnd = elementEnd(b, p, end, TAG.SEQUENCE, "revoked entry");
    let q = contentStart;
    const serialEnd = elementEnd(b, q, entryEnd, TAG.INTEGER, "entry serial");
    const serial = b.subarray(contentStart, serialEnd);
    checkInteger(serial, "entry serial");
    q = serialEnd;
    if (q >= entryEnd || (b[q] !== TAG.UTC_TIME && b[q] !== TAG.GENERALIZED_TIME)) {
      throw new DerError("revocationDate: not a time");
    }
    q = elementEnd(b, q, entryEnd, b[q], "revocationDate");
    if (q < entryEnd) {
      const extEnd = elementEnd(b, q, entryEnd, TAG.SEQUENCE, "crlEntryExtensions");
      readExtensions(
        b,
        { tag: TAG.SEQUENCE, start: q, content: contentStart, end: extEnd },
        "entry",
      );
      q = extEnd;
    }
    if (q !== entryEnd) throw new DerError("revoked entry: unexpected data after the last field");
    serials.add(serialHex(serial));
    p = entryEnd;
  }
}

/** Content offset of the element `elementEnd` read last (module state: no allocation per call). */
let contentStart = 0;

/** The end of the element with `tag` at `p` (inside `limit`); sets `contentStart`. Throws `DerError`. */
function elementEnd(b: Bytes, p: number, limit: number, tag: number, what: string): number {
  if (p + 2 > limit) throw new DerError(`${what}: missing`);
  if (b[p] !== tag) {
    throw new DerError(`${what}: tag 0x${b[p].toString(16)}, expected 0x${tag.toString(16)}`);
  }
  let len = b[p + 1];
  let c = p + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError(`${what}: bad length`);
    if (c + n > limit || b[c] === 0) throw new DerError(`${what}: bad length`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[c++];
    if (len < 0x80) throw new DerError(`${what}: length not minimal`);
  }
  const e = c + len;
  if (e > limit) throw new DerError(`${what}: runs past its parent`);
  contentStart = c;
  return e;
}

/** Lower-case hex without leading zeros, as `normalizeSerial` gives. */
function serialHex(bytes: Bytes): string {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let out = bytes[i].toString(16);
  for (i++; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function equalBytes(a: Bytes, b: Bytes): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
