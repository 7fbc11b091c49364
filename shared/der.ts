/**
 * A small, strict DER reader and writer for the few fixed ASN.1 shapes the
 * mesh walks itself: CRLs (`crl.ts`) and the issuer name of the CA
 * certificate.
 *
 * Why not asn1js (what `@peculiar/x509` parses with): it builds an object per
 * node and refuses DER of more than 10,000 nodes, so a CRL past ~1,250
 * entries did not parse at all. The reader here builds nothing: it steps
 * over one element at a time inside bounds it has checked, so its cost is
 * linear in the bytes and its memory constant. It is strict on purpose:
 * definite lengths in minimal form, single-byte tags, every length inside
 * its parent — anything else throws `DerError`, never reads out of bounds.
 * Signatures are checked with WebCrypto; nothing here is cryptography.
 */

/** Bytes in an ArrayBuffer (what WebCrypto takes). */
export type Bytes = Uint8Array<ArrayBuffer>;

/** Malformed or unexpected DER; the message says where. */
export class DerError extends Error {}

/** ASN.1 tags used by the mesh. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
  CONTEXT_0: 0xa0,
} as const;

/** One element: its tag and where its header, content and end lie in the buffer. */
export interface DerElement {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  content: number;
  /** Offset just past the content. */
  end: number;
}

/** Reads consecutive elements between `pos` and `end` of `bytes`. */
export class DerReader {
  readonly bytes: Bytes;
  #pos: number;
  #end: number;

  constructor(bytes: Bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.#pos = start;
    this.#end = end;
  }

  /** A reader over the content of `el`. */
  static inside(bytes: Bytes, el: DerElement): DerReader {
    return new DerReader(bytes, el.content, el.end);
  }

  /** True when every element has been read. */
  get done(): boolean {
    return this.#pos >= this.#end;
  }

  /** The tag of the next element, or -1 at the end. */
  peekTag(): number {
    return this.done ? -1 : this.bytes[this.#pos];
  }

  /** Reads the next element; with `tag`, it must carry that tag. Throws `DerError`. */
  next(tag?: number, what = "element"): DerElement {
    const b = this.bytes;
    const start = this.#pos;
    if (start >= this.#end) throw new DerError(`${what}: missing`);
    const t = b[start];
    if ((t & 0x1f) === 0x1f) throw new DerError(`${what}: multi-byte tag`);
    if (tag !== undefined && t !== tag) {
      throw new DerError(`${what}: tag 0x${t.toString(16)}, expected 0x${tag.toString(16)}`);
    }
    let p = start + 1;
    if (p >= this.#end) throw new DerError(`${what}: no length`);
    let len = b[p++];
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0) throw new DerError(`${what}: indefinite length`);
      if (n > 4) throw new DerError(`${what}: length of ${n} bytes`);
      if (p + n > this.#end) throw new DerError(`${what}: length runs past its parent`);
      if (b[p] === 0) throw new DerError(`${what}: length not minimal`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[p++];
      if (len < 0x80) throw new DerError(`${what}: length not minimal`);
    }
    const end = p + len;
    if (end > this.#end) throw new DerError(`${what}: runs past its parent`);
    this.#pos = end;
    return { tag: t, start, content: p, end };
  }

  /** Reads the next element if it carries `tag`. */
  optional(tag: number, what?: string): DerElement | undefined {
    return this.peekTag() === tag ? this.next(tag, what) : undefined;
  }

  /** Throws unless every element has been read. */
  finish(what: string): void {
    if (!this.done) throw new DerError(`${what}: unexpected data after the last field`);
  }
}

/** The content bytes of `el`. */
export function contentOf(bytes: Bytes, el: DerElement): Bytes {
  return bytes.subarray(el.content, el.end);
}

/** The whole encoding (header and content) of `el`. */
export function encodingOf(bytes: Bytes, el: DerElement): Bytes {
  return bytes.subarray(el.start, el.end);
}

/** Checks an INTEGER's content is minimal and non-empty; returns whether it is negative. */
export function checkInteger(content: Bytes, what: string): boolean {
  if (content.length === 0) throw new DerError(`${what}: empty integer`);
  if (
    content.length > 1 &&
    ((content[0] === 0 && !(content[1] & 0x80)) || (content[0] === 0xff && content[1] & 0x80))
  ) {
    throw new DerError(`${what}: integer not minimal`);
  }
  return (content[0] & 0x80) !== 0;
}

/** A non-negative INTEGER below 2^53. Throws `DerError`. */
export function readSmallInteger(content: Bytes, what: string): number {
  if (checkInteger(content, what)) throw new DerError(`${what}: negative`);
  let n = 0;
  for (const byte of content) n = n * 256 + byte;
  if (!Number.isSafeInteger(n)) throw new DerError(`${what}: too large`);
  return n;
}

/** Reads a UTCTime or GeneralizedTime in the DER form `…Z` with whole seconds. */
export function readTime(bytes: Bytes, el: DerElement, what: string): Date {
  const text = String.fromCharCode(...contentOf(bytes, el));
  let m: RegExpMatchArray | null;
  let year: number;
  if (el.tag === TAG.UTC_TIME) {
    m = text.match(/^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/);
    if (!m) throw new DerError(`${what}: bad UTCTime`);
    year = Number(m[1]) < 50 ? 2000 + Number(m[1]) : 1900 + Number(m[1]);
  } else if (el.tag === TAG.GENERALIZED_TIME) {
    m = text.match(/^(\d\d\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/);
    if (!m) throw new DerError(`${what}: bad GeneralizedTime`);
    year = Number(m[1]);
  } else {
    throw new DerError(`${what}: not a time`);
  }
  const [mo, d, h, mi, s] = m.slice(2).map(Number);
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, s));
  if (
    isNaN(date.getTime()) || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d ||
    h > 23 || mi > 59 || s > 59
  ) {
    throw new DerError(`${what}: no such time`);
  }
  return date;
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Bytes): string {
  let out = "";
  for (const b of bytes) out += HEX[b];
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

// ---- writing ----

/** Encodes one element: `tag`, DER length, and `content` (concatenated). */
export function der(tag: number, ...content: Bytes[]): Bytes {
  let len = 0;
  for (const c of content) len += c.length;
  const header = lengthHeader(tag, len);
  const out = new Uint8Array(header.length + len);
  out.set(header, 0);
  let p = header.length;
  for (const c of content) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

function lengthHeader(tag: number, len: number): Bytes {
  if (len < 0x80) return Uint8Array.of(tag, len);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Uint8Array.of(tag, 0x80 | bytes.length, ...bytes);
}

/** An INTEGER from unsigned big-endian bytes (leading zeros dropped, a sign byte added). */
export function derUnsigned(bytes: Bytes): Bytes {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  return v[0] & 0x80 ? der(TAG.INTEGER, Uint8Array.of(0), v) : der(TAG.INTEGER, v);
}

/** An INTEGER of a non-negative safe integer. */
export function derSmallInteger(n: number): Bytes {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  return derUnsigned(Uint8Array.from(bytes));
}

/** An OBJECT IDENTIFIER from dotted text. */
export function derOid(dotted: string): Bytes {
  const arcs = dotted.split(".").map(Number);
  const out: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      chunk.unshift(0x80 | (v & 0x7f));
    }
    out.push(...chunk);
  }
  return der(TAG.OID, Uint8Array.from(out));
}

/** UTCTime for years 1950–2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5), whole seconds. */
export function derTime(date: Date): Bytes {
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) throw new DerError(`Date out of range: ${date}`);
  const utc = year >= 1950 && year < 2050;
  const fields = [
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
  ];
  const len = (utc ? 2 : 4) + 10 + 1;
  const out = new Uint8Array(2 + len);
  out[0] = utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
  out[1] = len;
  let p = 2;
  if (!utc) {
    out[p++] = 48 + Math.floor(year / 1000);
    out[p++] = 48 + Math.floor(year / 100) % 10;
  }
  for (const v of [year % 100, ...fields]) {
    out[p++] = 48 + Math.floor(v / 10);
    out[p++] = 48 + v % 10;
  }
  out[p] = 0x5a; // Z
  return out;
}

/** The DER of a certificate's subject Name, read from the certificate's own bytes. */
export function certificateSubjectDer(cert: Bytes): Bytes {
  const outer = new DerReader(cert).next(TAG.SEQUENCE, "certificate");
  const tbs = DerReader.inside(cert, outer).next(TAG.SEQUENCE, "tbsCertificate");
  const r = DerReader.inside(cert, tbs);
  r.optional(TAG.CONTEXT_0, "version");
  r.next(TAG.INTEGER, "serial");
  r.next(TAG.SEQUENCE, "signature algorithm");
  r.next(TAG.SEQUENCE, "issuer");
  r.next(TAG.SEQUENCE, "validity");
  return encodingOf(cert, r.next(TAG.SEQUENCE, "subject"));
}

/**
 * The content of a SEQUENCE OF { INTEGER serial, Time date } — CRL entries —
 * written straight into one buffer (no allocation per entry: 100,000 entries
 * take tens of ms, where building each through `der()` took seconds).
 * Serials are unsigned hex. Throws `DerError` on a serial that is not hex.
 */
export function derSerialDateList(entries: { serial: string; date: Date }[]): Bytes {
  let bound = 0;
  for (const e of entries) bound += 2 + 2 + (e.serial.length >> 1) + 2 + 2 + 17;
  const out = new Uint8Array(bound);
  let p = 0;
  let lastSecond = NaN;
  let time = new Uint8Array(0);
  for (const e of entries) {
    const hex = e.serial;
    if (hex.length === 0 || hex.length > 200) {
      throw new DerError(`Bad hex serial "${hex.slice(0, 80)}"`);
    }
    const second = Math.floor(e.date.getTime() / 1000);
    if (second !== lastSecond) {
      time = derTime(e.date);
      lastSecond = second;
    }
    // Skip leading zero digits, then decide on a sign byte from the first byte's high bit.
    let i = 0;
    while (i < hex.length - 1 && hex.charCodeAt(i) === 48) i++;
    const digits = hex.length - i;
    const odd = digits % 2;
    const nbytes = (digits + odd) >> 1;
    const first = odd ? nibble(hex.charCodeAt(i), hex) : nibble(hex.charCodeAt(i), hex) * 16 +
      nibble(hex.charCodeAt(i + 1), hex);
    const sign = first & 0x80 ? 1 : 0;
    const intLen = nbytes + sign;
    const body = 2 + intLen + time.length;
    out[p++] = TAG.SEQUENCE;
    out[p++] = body;
    out[p++] = TAG.INTEGER;
    out[p++] = intLen;
    if (sign) out[p++] = 0;
    out[p++] = first;
    for (let j = i + (odd ? 1 : 2); j < hex.length; j += 2) {
      out[p++] = nibble(hex.charCodeAt(j), hex) * 16 + nibble(hex.charCodeAt(j + 1), hex);
    }
    out.set(time, p);
    p += time.length;
  }
  return out.subarray(0, p);
}

function nibble(c: number, hex: string): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  throw new DerError(`Bad hex serial "${hex.slice(0, 80)}"`);
}
