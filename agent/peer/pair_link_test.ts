/**
 * A pair connection's stream over a real loopback socket: JSON lines however
 * they are chunked, bounded and checked; a tunnel's frames on the same
 * buffer, with the bytes behind its end frame kept for the next line; a
 * tunnel's `close()` keeps the connection and its `abort()` ends it.
 */
import assert from "node:assert/strict";
import type { ZtmError } from "@ztm/shared/errors";
import { MAX_PEER_LINE_BYTES, type PeerAnswer } from "@ztm/shared/peer_protocol";
import { closeAll, deadline, readAll, tcpPair } from "../proxy/_fixture.ts";
import { PairLink, writeAll } from "./pair_link.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A link on one end of a loopback connection, and the raw other end. */
async function link() {
  const [raw, near] = await tcpPair();
  const l = new PairLink(near);
  return { link: l, raw, [Symbol.dispose]: () => closeAll(raw, near) };
}

/** A 4-byte big-endian length, then `bytes` (an empty `bytes` is the end frame). */
function frame(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.byteLength);
  new DataView(out.buffer).setUint32(0, bytes.byteLength);
  out.set(bytes, 4);
  return out;
}

Deno.test("lines are read one at a time however the writes cut them, then null at the end", async () => {
  using l = await link();
  await writeAll(l.raw, enc.encode('{"type":"opened"}\n{"type":"err'));
  assert.deepEqual(await deadline(l.link.readMessage(), 5_000, "line 1"), { type: "opened" });
  const second = l.link.readMessage();
  await writeAll(l.raw, enc.encode('or","code":"x"}\n'));
  assert.deepEqual(await deadline(second, 5_000, "line 2"), { type: "error", code: "x" });
  await l.raw.closeWrite();
  assert.equal(await deadline(l.link.readMessage(), 5_000, "the end"), null);
});

Deno.test("a line cut by the end, an overlong line and a line that is no message are refused", async () => {
  {
    using l = await link();
    await writeAll(l.raw, enc.encode('{"type":"opened"'));
    await l.raw.closeWrite();
    await assert.rejects(deadline(l.link.readMessage(), 5_000, "refusal"), (e: ZtmError) => {
      assert.equal(e.code, "bad_peer_line");
      assert.equal(e.status, 400);
      return true;
    });
  }
  {
    using l = await link();
    // No newline within the bound: refused without waiting for one.
    await writeAll(l.raw, new Uint8Array(MAX_PEER_LINE_BYTES + 2).fill(0x61));
    await assert.rejects(
      deadline(l.link.readMessage(), 5_000, "refusal"),
      (e: ZtmError) => e.code === "peer_line_too_large" && e.status === 400,
    );
  }
  using l = await link();
  await writeAll(l.raw, enc.encode('not json\n{"no":"type"}\n{"type":"opened"}\n'));
  for (const _ of [1, 2]) {
    await assert.rejects(
      deadline(l.link.readMessage(), 5_000, "refusal"),
      (e: ZtmError) => e.code === "bad_message" && e.status === 400,
    );
  }
  // A check passes what it accepts and throws what it refuses.
  const checked = await l.link.readMessage((v) => ({ type: v.type, checked: true }));
  assert.deepEqual(checked, { type: "opened", checked: true });
});

Deno.test("writeMessages sends each message as one JSON line, in order", async () => {
  using l = await link();
  const a: PeerAnswer = { type: "opened" };
  const b: PeerAnswer = { type: "error", status: 403, code: "access_denied", message: "no" };
  await l.link.writeMessages(a, b);
  l.link.close();
  const text = dec.decode(await deadline(readAll(l.raw), 5_000, "the lines"));
  assert.equal(text, JSON.stringify(a) + "\n" + JSON.stringify(b) + "\n");
});

Deno.test("a tunnel's frames and the line behind its end frame share one read buffer", async () => {
  using l = await link();
  const big = crypto.getRandomValues(new Uint8Array(40_000));
  // Everything at once: two frames, the end frame, and the next exchange's line.
  await writeAll(
    l.raw,
    new Uint8Array([
      ...frame(enc.encode("hello ")),
      ...frame(big),
      ...frame(new Uint8Array(0)),
      ...enc.encode('{"type":"open","proto":"tcp","name":"web"}\n'),
    ]),
  );
  const leg = l.link.framed();
  const got: number[] = [];
  while (true) {
    const chunk = await deadline(leg.read(), 5_000, "a frame");
    if (chunk === null) break;
    got.push(...chunk);
  }
  assert.deepEqual(new Uint8Array(got), new Uint8Array([...enc.encode("hello "), ...big]));
  leg.close();
  assert.equal(l.link.closed, false, "a tunnel's close keeps the pair for the next one");
  assert.deepEqual(await deadline(l.link.readMessage(), 5_000, "the line behind"), {
    type: "open",
    proto: "tcp",
    name: "web",
  });

  // What the tunnel writes goes out as frames, its end as an end frame.
  const out = l.link.framed();
  await out.write(enc.encode("abc"));
  await out.closeWrite();
  out.abort();
  assert.equal(l.link.closed, true, "abort ends the pair");
  l.link.close(); // idempotent
  const wire = await deadline(readAll(l.raw), 5_000, "the frames");
  assert.deepEqual(
    wire,
    new Uint8Array([...frame(enc.encode("abc")), ...frame(new Uint8Array(0))]),
  );
});

Deno.test("a UDP flow's datagrams keep their bounds both ways", async () => {
  const [a, b] = await tcpPair();
  const left = new PairLink(a);
  const right = new PairLink(b);
  try {
    const out = left.datagrams();
    await out.writeBatch([enc.encode("one"), new Uint8Array(0), enc.encode("three")]);
    await out.write(enc.encode("four"));
    await out.closeWrite();
    await left.writeMessages({ type: "opened" });
    const inbound = right.datagrams();
    const got: string[] = [];
    while (true) {
      const d = await deadline(inbound.read(), 5_000, "a datagram");
      if (d === null) break;
      got.push(dec.decode(d));
    }
    assert.deepEqual(got, ["one", "", "three", "four"]);
    assert.deepEqual(await deadline(right.readMessage(), 5_000, "the line"), { type: "opened" });
  } finally {
    left.close();
    right.close();
  }
});
