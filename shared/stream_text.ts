/**
 * Reading a whole (small) body from a Node-style readable stream — an HTTP/2
 * request or response — with a byte limit, for the hub's and the agent's
 * control-plane requests. Bulk data never goes through here.
 */
import type { Readable } from "node:stream";

/** Thrown by `readStreamText` past its limit; callers map it to their own error. */
export class StreamTooLarge extends Error {}

/**
 * Resolves with the stream's text once it ends. Rejects with `StreamTooLarge`
 * (and stops reading) past `limit` bytes, or with the stream's error.
 */
export function readStreamText(stream: Readable, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    stream.on("data", (c: Uint8Array) => {
      size += c.byteLength;
      if (size > limit) {
        stream.pause();
        reject(new StreamTooLarge(`Body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    stream.on("end", () => {
      const out = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.byteLength;
      }
      resolve(new TextDecoder().decode(out));
    });
    stream.on("error", reject);
  });
}
