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

Deno.test("framed legs read frames split anywhere, through a reused buffer", async () => {
  // Two frames ("abc", "defg") and the end frame, cut at awkward places.
  const wire = new Uint8Array([0, 0, 0, 3, 97, 98, 99, 0, 0, 0, 4, 100, 101, 102, 103, 0, 0, 0, 0]);
  for (const cuts of [[1, 5, 9, 18], [2, 9], [7, 8, 10], [4]]) {
    const parts: Uint8Array[] = [];
    let at = 0;
    for (const c of [...cuts, wire.length]) {
      parts.push(wire.slice(at, c));
      at = c;
    }
    const leg = framedLeg(reusingLeg(parts.filter((p) => p.byteLength)));
    let text = "";
    while (true) {
      const chunk = await leg.read();
      if (chunk === null) break;
      text += new TextDecoder().decode(chunk);
    }
    assertEquals(text, "abcdefg", `cuts ${cuts}`);
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
