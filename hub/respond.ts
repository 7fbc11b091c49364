/**
 * Answers on the hub's HTTP/2 streams: JSON bodies and the shared error
 * rendering `{"error":{"code","message"}}`. A stream that is already gone is
 * left alone; one that already sent headers just gets the body.
 */
import type { ServerHttp2Stream } from "node:http2";
import { errorBody } from "@ztm/shared/errors";

/** Writes a JSON response and ends the stream. */
export function respondJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) {
    stream.respond({ ":status": status, "content-type": "application/json" });
  }
  stream.end(JSON.stringify(body) + "\n");
}

/** Renders any thrown value as the JSON error response (unknown errors as 500). */
export function respondError(stream: ServerHttp2Stream, err: unknown): void {
  const { status, body } = errorBody(err);
  respondJson(stream, status, body);
}
