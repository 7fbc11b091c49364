/**
 * The DER reader's bounds and strictness on hand-made and hostile bytes
 * (every header form it refuses, every truncation and bit flip of a nested
 * structure: a `DerError`, never an out-of-bounds read or another
 * exception), and the writers against known encodings and the reader. CRLs
 * built on it are tested in `crl_test.ts`.
 */
import assert from "node:assert/strict";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";
import { parseCertificate } from "./certs.ts";
import { concatBytes } from "./concat_bytes.ts";
import {
  type Bytes,
  certificateSubjectDer,
  checkInteger,
  contentOf,
  der,
  DerError,
  derOid,
  DerReader,
  derSerialDateList,
  derSmallInteger,
  derTime,
  derUnsigned,
  encodingOf,
  readSmallInteger,
  readTime,
  TAG,
  toHex,
} from "./der.ts";

const bytes = (...b: number[]): Bytes => Uint8Array.from(b);
const hex = (text: string): Bytes => Uint8Array.fromHex(text);

/** Asserts that `fn` throws a `DerError` whose message matches. */
function throwsDer(fn: () => unknown, message: RegExp | string, what?: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof DerError, `${what ?? ""} threw ${err}`);
    if (typeof message === "string") assert.equal(err.message, message, what);
    else assert.match(err.message, message, what);
    return true;
  });
}

/** Reads every element of `b` recursively (SEQUENCE, SET, [0] descend); returns how many. */
function walk(b: Bytes, r = new DerReader(b)): number {
  let n = 0;
  while (!r.done) {
    const el = r.next();
    // Each element takes two bytes at least: more means the reader lost its place.
    if (++n > b.length) throw new Error("more elements than bytes");
    if (el.tag === TAG.SEQUENCE || el.tag === TAG.SET || el.tag === TAG.CONTEXT_0) {
      n += walk(b, DerReader.inside(b, el));
    }
  }
  return n;
}

Deno.test("DerReader steps through nested elements inside their bounds", () => {
  const inner = der(TAG.SEQUENCE, derSmallInteger(5), der(TAG.NULL));
  const b = der(
    TAG.SEQUENCE,
    der(TAG.CONTEXT_0, derSmallInteger(2)),
    inner,
    der(TAG.BOOLEAN, bytes(0xff)),
  );
  const top = new DerReader(b);
  const seq = top.next(TAG.SEQUENCE, "outer");
  assert.ok(top.done);
  assert.equal(top.peekTag(), -1);
  top.finish("outer");
  const r = DerReader.inside(b, seq);
  assert.equal(r.optional(TAG.INTEGER), undefined, "optional leaves a different tag unread");
  const version = r.optional(TAG.CONTEXT_0, "version")!;
  assert.deepEqual(contentOf(b, version), derSmallInteger(2));
  const el = r.next(TAG.SEQUENCE, "inner");
  assert.deepEqual(encodingOf(b, el), inner);
  assert.equal(el.end - el.start, inner.length);
  assert.equal(r.peekTag(), TAG.BOOLEAN);
  throwsDer(() => r.finish("outer"), /outer: unexpected data/);
  throwsDer(() => r.next(TAG.INTEGER, "flag"), "flag: tag 0x1, expected 0x2");
  r.next(TAG.BOOLEAN);
  r.finish("outer");
  throwsDer(() => r.next(undefined, "extra"), "extra: missing");
  assert.equal(walk(b), 7);
});

Deno.test("DerReader refuses every header that is not minimal, definite DER inside its parent", () => {
  const refusals: [Bytes, RegExp][] = [
    [bytes(), /missing/],
    [bytes(0x1f, 0x01, 0x00), /multi-byte tag/],
    [bytes(0x3f, 0x00), /multi-byte tag/],
    [bytes(0x04), /no length/],
    [bytes(0x30, 0x80, 0x00, 0x00), /indefinite length/],
    [bytes(0x04, 0x85, 1, 0, 0, 0, 0), /length of 5 bytes/],
    [bytes(0x04, 0x82, 0x01), /length runs past its parent/],
    [bytes(0x04, 0x81, 0x05, 1, 2, 3, 4, 5), /length not minimal/],
    [bytes(0x04, 0x82, 0x00, 0x80, ...new Uint8Array(0x80)), /length not minimal/],
    [bytes(0x04, 0x03, 1, 2), /runs past its parent/],
    // A 4-byte length of 4 GiB on 8 bytes of input: refused, nothing allocated.
    [bytes(0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0, 0), /runs past its parent/],
  ];
  for (const [b, message] of refusals) {
    throwsDer(() => new DerReader(b).next(), message, toHex(b));
  }
  // A child is bounded by its parent, not by the buffer: the bytes after the parent do not count.
  const b = bytes(0x30, 0x02, 0x04, 0x03, 0xaa, 0xbb, 0xcc);
  const parent = new DerReader(b, 0, 4).next(TAG.SEQUENCE);
  throwsDer(() => DerReader.inside(b, parent).next(), /runs past its parent/);
  // The longest lengths it takes: 0x80 in one byte, 0x100 in two.
  for (const len of [0x7f, 0x80, 0xff, 0x100, 0x10000]) {
    const el = new DerReader(der(TAG.OCTET_STRING, new Uint8Array(len))).next(TAG.OCTET_STRING);
    assert.equal(el.end - el.content, len);
  }
});

Deno.test("DerReader throws only DerError on every truncation and bit flip of a nested structure", () => {
  const good = der(
    TAG.SEQUENCE,
    der(TAG.SEQUENCE, derOid("1.2.840.10045.4.3.2"), der(TAG.NULL)),
    der(TAG.SET, derSmallInteger(300), der(TAG.OCTET_STRING, new Uint8Array(200))),
    der(TAG.CONTEXT_0, derTime(new Date(Date.UTC(2030, 0, 1)))),
  );
  assert.equal(walk(good), 9);
  const bad: Bytes[] = [];
  for (let n = 0; n < good.length; n++) bad.push(good.slice(0, n));
  for (let i = 0; i < good.length; i++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const m = good.slice();
      m[i] ^= x;
      bad.push(m);
    }
  }
  let refused = 0;
  for (const b of bad) {
    try {
      walk(b);
    } catch (err) {
      assert.ok(err instanceof DerError, `${toHex(b)}: ${err}`);
      refused++;
    }
  }
  // Every truncation is refused (flips inside content may still be well-formed DER).
  assert.ok(refused >= good.length, `${refused} refused`);
});

Deno.test("checkInteger and readSmallInteger refuse empty, non-minimal, negative and unsafe integers", () => {
  assert.equal(checkInteger(hex("00"), "n"), false);
  assert.equal(checkInteger(hex("0080"), "n"), false);
  assert.equal(checkInteger(hex("80"), "n"), true);
  assert.equal(checkInteger(hex("ff7f"), "n"), true);
  throwsDer(() => checkInteger(hex(""), "n"), "n: empty integer");
  for (const h of ["0001", "007f", "ff80", "ffff"]) {
    throwsDer(() => checkInteger(hex(h), "n"), "n: integer not minimal", h);
  }
  assert.equal(readSmallInteger(hex("00"), "n"), 0);
  assert.equal(readSmallInteger(hex("00ff"), "n"), 255);
  assert.equal(readSmallInteger(hex("1fffffffffffff"), "n"), Number.MAX_SAFE_INTEGER);
  throwsDer(() => readSmallInteger(hex("20000000000000"), "n"), "n: too large");
  throwsDer(() => readSmallInteger(hex("80"), "n"), "n: negative");
});

Deno.test("readTime reads DER UTCTime and GeneralizedTime and refuses other forms and impossible dates", () => {
  const time = (tag: number, text: string) => {
    const b = der(tag, new TextEncoder().encode(text));
    return readTime(b, new DerReader(b).next(), "t");
  };
  assert.equal(time(TAG.UTC_TIME, "491231235959Z").toISOString(), "2049-12-31T23:59:59.000Z");
  assert.equal(time(TAG.UTC_TIME, "500101000000Z").toISOString(), "1950-01-01T00:00:00.000Z");
  assert.equal(
    time(TAG.GENERALIZED_TIME, "20500228120000Z").toISOString(),
    "2050-02-28T12:00:00.000Z",
  );
  assert.equal(time(TAG.UTC_TIME, "480229000000Z").toISOString(), "2048-02-29T00:00:00.000Z");
  for (
    const text of [
      "4912312359Z",
      "491231235959",
      "491231235959+0000",
      "491231235959.5Z",
      "49123123595aZ",
    ]
  ) {
    throwsDer(() => time(TAG.UTC_TIME, text), "t: bad UTCTime", text);
  }
  for (const text of ["205001010000Z", "20500101000000.1Z", "20500101000000"]) {
    throwsDer(() => time(TAG.GENERALIZED_TIME, text), "t: bad GeneralizedTime", text);
  }
  for (
    const text of [
      "300230000000Z",
      "490229000000Z",
      "301301000000Z",
      "300101240000Z",
      "300101006000Z",
      "300101000060Z",
      "300100000000Z",
    ]
  ) {
    throwsDer(() => time(TAG.UTC_TIME, text), "t: no such time", text);
  }
  throwsDer(() => time(TAG.OCTET_STRING, "300101000000Z"), "t: not a time");
});

Deno.test("der writes definite minimal lengths the reader takes back", () => {
  assert.deepEqual(der(TAG.NULL), bytes(0x05, 0x00));
  assert.deepEqual(der(TAG.OCTET_STRING, bytes(1), bytes(2, 3)), bytes(0x04, 0x03, 1, 2, 3));
  assert.deepEqual(der(TAG.OCTET_STRING, new Uint8Array(0x7f)).subarray(0, 2), bytes(0x04, 0x7f));
  assert.deepEqual(
    der(TAG.OCTET_STRING, new Uint8Array(0x80)).subarray(0, 3),
    bytes(0x04, 0x81, 0x80),
  );
  assert.deepEqual(der(TAG.OCTET_STRING, new Uint8Array(0x100)).subarray(0, 4), hex("04820100"));
  assert.deepEqual(
    der(TAG.OCTET_STRING, new Uint8Array(0x10000)).subarray(0, 5),
    hex("0483010000"),
  );
});

Deno.test("derUnsigned, derSmallInteger and derOid match known encodings", () => {
  assert.deepEqual(derSmallInteger(0), hex("020100"));
  assert.deepEqual(derSmallInteger(127), hex("02017f"));
  assert.deepEqual(derSmallInteger(128), hex("02020080"));
  assert.deepEqual(derSmallInteger(256), hex("02020100"));
  assert.deepEqual(derSmallInteger(Number.MAX_SAFE_INTEGER), hex("02071fffffffffffff"));
  assert.deepEqual(derUnsigned(hex("000000")), hex("020100"));
  assert.deepEqual(derUnsigned(hex("0001ff")), hex("020201ff"));
  assert.deepEqual(derUnsigned(hex("00ff")), hex("020200ff"));
  for (const n of [0, 1, 127, 128, 255, 65_535, 2 ** 40]) {
    const b = derSmallInteger(n);
    const el = new DerReader(b).next(TAG.INTEGER);
    assert.equal(readSmallInteger(contentOf(b, el), "n"), n);
  }
  // ecdsa-with-SHA256, cRLNumber, and an arc of exactly 128.
  assert.deepEqual(derOid("1.2.840.10045.4.3.2"), hex("06082a8648ce3d040302"));
  assert.deepEqual(derOid("2.5.29.20"), hex("0603551d14"));
  assert.deepEqual(derOid("1.2.128"), hex("06032a8100"));
});

Deno.test("derTime writes UTCTime for 1950-2049 and GeneralizedTime outside, and refuses years past 9999", () => {
  const cases: [string, number, string][] = [
    ["1950-01-01T00:00:00Z", TAG.UTC_TIME, "500101000000Z"],
    ["2049-12-31T23:59:59.999Z", TAG.UTC_TIME, "491231235959Z"],
    ["2050-01-01T00:00:00Z", TAG.GENERALIZED_TIME, "20500101000000Z"],
    ["1949-12-31T23:59:59Z", TAG.GENERALIZED_TIME, "19491231235959Z"],
    ["9999-12-31T23:59:59Z", TAG.GENERALIZED_TIME, "99991231235959Z"],
  ];
  for (const [iso, tag, text] of cases) {
    const b = derTime(new Date(iso));
    const el = new DerReader(b).next(tag, iso);
    assert.equal(new TextDecoder().decode(contentOf(b, el)), text);
    assert.equal(readTime(b, el, iso).getTime(), Math.floor(Date.parse(iso) / 1000) * 1000);
  }
  assert.throws(() => derTime(new Date("+010000-01-01T00:00:00Z")), DerError);
  assert.throws(() => derTime(new Date(NaN)), DerError);
});

Deno.test("certificateSubjectDer returns the subject Name's own bytes, and DerError for a non-certificate", async () => {
  const ca = await newCa();
  const leaf = parseCertificate((await newLeaf(ca, { name: "alice" })).certificate);
  const subject = certificateSubjectDer(new Uint8Array(leaf.rawData));
  assert.deepEqual(subject, new Uint8Array(leaf.subjectName.toArrayBuffer()));
  assert.notDeepEqual(subject, new Uint8Array(leaf.issuerName.toArrayBuffer()));
  assert.deepEqual(
    certificateSubjectDer(new Uint8Array(ca.certificate.rawData)),
    new Uint8Array(ca.certificate.subjectName.toArrayBuffer()),
  );
  for (
    const b of [
      bytes(),
      der(TAG.SEQUENCE),
      der(TAG.SEQUENCE, der(TAG.SEQUENCE, derSmallInteger(1))),
    ]
  ) {
    assert.throws(() => certificateSubjectDer(b), DerError);
  }
});

Deno.test("derSerialDateList writes minimal unsigned serials and their times, and refuses bad hex", () => {
  const at = new Date(Date.UTC(2030, 5, 1, 12, 0, 0));
  const later = new Date(Date.UTC(2060, 0, 1));
  const entries = [
    { serial: "01", date: at },
    { serial: "0000ab", date: at },
    { serial: "80", date: at },
    { serial: "fff", date: later },
    { serial: "ABCDEF", date: later },
    { serial: "7" + "f".repeat(199), date: at },
    { serial: "0", date: at },
  ];
  const b = derSerialDateList(entries);
  const r = new DerReader(b);
  const read: [string, string][] = [];
  while (!r.done) {
    const entry = DerReader.inside(b, r.next(TAG.SEQUENCE, "entry"));
    const serial = contentOf(b, entry.next(TAG.INTEGER, "serial"));
    assert.equal(checkInteger(serial, "serial"), false);
    const time = readTime(b, entry.next(undefined, "date"), "date");
    entry.finish("entry");
    read.push([toHex(serial), time.toISOString()]);
  }
  assert.deepEqual(read, [
    ["01", at.toISOString()],
    ["00ab", at.toISOString()],
    ["0080", at.toISOString()],
    ["0fff", later.toISOString()],
    ["00abcdef", later.toISOString()],
    ["7" + "f".repeat(199), at.toISOString()],
    ["00", at.toISOString()],
  ]);
  // The same as writing each entry through der().
  const slow = entries.map((e) =>
    der(
      TAG.SEQUENCE,
      derUnsigned(hex(e.serial.length % 2 ? "0" + e.serial : e.serial)),
      derTime(e.date),
    )
  );
  assert.deepEqual(b, concatBytes(slow));
  for (const serial of ["", "f".repeat(201), "0x12", "12 3", "g1"]) {
    throwsDer(() => derSerialDateList([{ serial, date: at }]), /^Bad hex serial/, serial);
  }
  assert.equal(derSerialDateList([]).length, 0);
});
