/**
 * `readStreamText` over real Node streams: the whole text across chunk
 * boundaries (UTF-8 split anywhere), the byte limit, and the stream's error.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { readStreamText, StreamTooLarge } from "./stream_text.ts";

const encoder = new TextEncoder();

Deno.test("readStreamText joins the chunks and decodes UTF-8 split across them", async () => {
  const text = "héllo, 名前 🙂 world";
  const bytes = encoder.encode(text);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const s = new PassThrough();
    const read = readStreamText(s, 1024);
    s.write(bytes.subarray(0, cut));
    s.end(bytes.subarray(cut));
    assert.equal(await read, text, `cut at ${cut}`);
  }
  const empty = new PassThrough();
  const read = readStreamText(empty, 0);
  empty.end();
  assert.equal(await read, "");
});

Deno.test("readStreamText takes exactly its limit and rejects StreamTooLarge one byte past it, and stops reading", async () => {
  const at = new PassThrough();
  const ok = readStreamText(at, 10);
  at.write(encoder.encode("12345"));
  at.end(encoder.encode("67890"));
  assert.equal(await ok, "1234567890");

  const over = new PassThrough();
  const refused = readStreamText(over, 10);
  over.write(encoder.encode("123456"));
  over.write(encoder.encode("78901"));
  await assert.rejects(refused, (err) => {
    assert.ok(err instanceof StreamTooLarge);
    assert.equal(err.message, "Body is larger than 10 bytes");
    return true;
  });
  assert.equal(
    over.isPaused(),
    true,
    "the stream is paused, so a sender cannot make it buffer more",
  );
  over.destroy();
});

Deno.test("readStreamText rejects with the stream's own error", async () => {
  const s = new PassThrough();
  const read = readStreamText(s, 100);
  s.write(encoder.encode("partial"));
  const boom = new Error("reset by peer");
  s.destroy(boom);
  await assert.rejects(read, (err) => err === boom);
});
