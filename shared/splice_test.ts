import { assertEquals } from "../tests/assert.ts";
import { framedLeg, type Leg } from "./splice.ts";

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
