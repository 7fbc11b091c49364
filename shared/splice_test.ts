import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { datagramLeg, framedLeg, type Leg } from "./splice.ts";
import { concatBytes } from "./concat_bytes.ts";

/** A leg that hands out `chunks` through one reused buffer, as a native connection does. */
function reusingLeg(chunks: Uint8Array[]): Leg & { written: Uint8Array[] } {
  const buf = new Uint8Array(64);
  const written: Uint8Array[] = [];
  return {
    written,
    read() {
      const next = chunks.shift();
      if (!next) return Promise.resolve(null);
      buf.set(next);
      return Promise.resolve(buf.subarray(0, next.byteLength));
    },
    write(chunk) {
      written.push(chunk.slice());
      return Promise.resolve();
    },
    closeWrite: () => Promise.resolve(),
    abort() {},
    close() {},
  };
}

/** Two frames ("abc", "defg"), the end frame, then two bytes of what comes next ("hi"). */
const WIRE = new Uint8Array([
  ...[0, 0, 0, 3, 97, 98, 99, 0, 0, 0, 4, 100, 101, 102, 103, 0, 0, 0, 0],
  ...[104, 105],
]);
const END_AT = WIRE.length - 2;
const CUTS = [[1, 5, 9, 18], [2, 9], [7, 8, 10], [4], [19], [20], [18, 19]];

/** `WIRE` cut at `cuts`. */
function partsOf(cuts: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cuts, WIRE.length]) {
    parts.push(WIRE.slice(at, c));
    at = c;
  }
  return parts.filter((p) => p.byteLength);
}

Deno.test("framed legs read frames split anywhere, through a reused buffer", async () => {
  for (const cuts of CUTS) {
    let rest = "";
    const leg = framedLeg(reusingLeg(partsOf(cuts)), (r) => (rest = new TextDecoder().decode(r)));
    let text = "";
    while (true) {
      const chunk = await leg.read();
      if (chunk === null) break;
      text += new TextDecoder().decode(chunk);
    }
    assertEquals(text, "abcdefg", `cuts ${cuts}`);
    // What was read past the end frame is handed over; a later read does not consume more.
    const partEnd = Math.min(...cuts.filter((c) => c >= END_AT), WIRE.length);
    const expected = new TextDecoder().decode(WIRE.slice(END_AT, partEnd));
    assertEquals(rest, expected, `rest, cuts ${cuts}`);
    assertEquals(await leg.read(), null);
  }
});

Deno.test("framed legs write a length before each chunk and an empty frame at the end", async () => {
  const base = reusingLeg([]);
  const leg = framedLeg(base);
  await leg.write(new Uint8Array([1, 2]));
  await leg.write(new Uint8Array([3]));
  await leg.closeWrite();
  assertEquals(base.written.map((w) => [...w]), [[0, 0, 0, 2, 1, 2], [0, 0, 0, 1, 3], [
    0,
    0,
    0,
    0,
  ]]);
});

/** A leg that hands out `wire` in chunks of `size` through one reused buffer. */
function chunkedLeg(wire: Uint8Array, size: number): Leg {
  const buf = new Uint8Array(size);
  let at = 0;
  return {
    read() {
      if (at >= wire.byteLength) return Promise.resolve(null);
      const n = Math.min(size, wire.byteLength - at);
      buf.set(wire.subarray(at, at + n));
      at += n;
      return Promise.resolve(buf.subarray(0, n));
    },
    write: () => Promise.resolve(),
    closeWrite: () => Promise.resolve(),
    abort() {},
    close() {},
  };
}

Deno.test("datagram legs keep each datagram whole, empty ones included, however the bytes arrive", async () => {
  const datagrams = [0, 1, 100, 3000, 0, 65_507].map((n) =>
    Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 255)
  );
  const out = reusingLeg([]);
  const writer = datagramLeg(out);
  await writer.write(datagrams[0]);
  await writer.write(datagrams[1]);
  await writer.writeBatch(datagrams.slice(2));
  await writer.closeWrite();
  // An empty datagram is a 1-byte frame, never the end frame.
  assertEquals([...out.written[0]], [0, 0, 0, 1, 0]);
  const wire = concatBytes([...out.written, new Uint8Array([104, 105])]);
  for (const size of [1, 3, 7, 64, 1000, 70_000]) {
    let rest = "";
    const reader = datagramLeg(chunkedLeg(wire, size), (r) => (rest = new TextDecoder().decode(r)));
    const got: Uint8Array[] = [];
    while (true) {
      const d = await reader.read();
      if (d === null) break;
      got.push(d.slice());
    }
    assertEquals(got.length, datagrams.length, `chunks of ${size}`);
    for (let i = 0; i < got.length; i++) assertEquals(got[i], datagrams[i], `datagram ${i}`);
    // Bytes read past the end frame stay for the next exchange (when they came in its chunk).
    if (size >= wire.byteLength) assertEquals(rest, "hi");
  }
});

Deno.test("datagram legs refuse datagrams over 65,507 bytes and frames of another kind", async () => {
  const writer = datagramLeg(reusingLeg([]));
  let refused = false;
  await writer.write(new Uint8Array(65_508)).catch((err) => (refused = err instanceof RangeError));
  assertEquals(refused, true);
  const tooLong = new Uint8Array([0, 1, 0, 0, 0]); // 65,536-byte frame
  let failed = false;
  await datagramLeg(chunkedLeg(tooLong, 64)).read().catch(() => (failed = true));
  assertEquals(failed, true);
  const otherKind = new Uint8Array([0, 0, 0, 2, 1, 42]);
  failed = false;
  await datagramLeg(chunkedLeg(otherKind, 64)).read().catch(() => (failed = true));
  assertEquals(failed, true);
});
