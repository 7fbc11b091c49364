/**
 * Joins a local TCP socket and a tunnel stream both ways, with backpressure
 * (`pipe` pauses the reader while the writer is full).
 *
 * A clean end on one side becomes a half-close on the other (FIN ↔
 * END_STREAM), so request/response protocols that shut down their write side
 * keep working. An error on either side tears down both; only then is the
 * stream reset.
 */
import { type ClientHttp2Stream, constants } from "node:http2";
import type { Socket } from "node:net";

/** Splices `socket` and `stream`; resolves with byte counts when both are closed. */
export function splice(
  socket: Socket,
  stream: ClientHttp2Stream,
): Promise<{ up: number; down: number }> {
  let up = 0;
  let down = 0;
  socket.on("data", (c: Uint8Array) => (up += c.byteLength));
  stream.on("data", (c: Uint8Array) => (down += c.byteLength));
  socket.pipe(stream);
  stream.pipe(socket);
  socket.on("error", () => {}); // seen through `close(hadError)` below
  stream.on("error", () => {});
  const socketClosed = new Promise<void>((resolve) =>
    socket.on("close", (hadError: boolean) => {
      if (hadError && !stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
      resolve();
    })
  );
  const streamClosed = new Promise<void>((resolve) =>
    stream.on("close", () => {
      const clean = stream.readableEnded && (stream.rstCode ?? 0) === constants.NGHTTP2_NO_ERROR;
      if (!clean) socket.destroy();
      resolve();
    })
  );
  socket.resume();
  return Promise.all([socketClosed, streamClosed]).then(() => ({ up, down }));
}
