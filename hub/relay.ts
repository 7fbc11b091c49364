/**
 * The hub's data path: joins the caller's tunnel stream and the provider's
 * session stream, both ways, with backpressure (`pipe` pauses the reader
 * while the writer's buffer is full, so the hub holds at most one window per
 * direction).
 *
 * Ends are passed on gracefully (END_STREAM, a half-close the other side may
 * answer); a stream that dies abnormally (reset, session lost) takes the other
 * down with it. Resets are kept for errors only: nghttp2 counts incoming
 * RST_STREAM against a rapid-reset budget and drops busy sessions that spend it.
 *
 * This is the one seam the data path goes through; the benchmark issue may
 * replace how bytes move behind it.
 */
import type { ServerHttp2Stream } from "node:http2";
import { constants } from "node:http2";

/** Totals of one relayed tunnel. */
export interface RelayResult {
  /** Bytes caller → provider. */
  up: number;
  /** Bytes provider → caller. */
  down: number;
  /** True when both directions ended normally. */
  clean: boolean;
}

/** Pipes `caller` and `provider` into each other; resolves when both streams have closed. */
export function relay(
  caller: ServerHttp2Stream,
  provider: ServerHttp2Stream,
): Promise<RelayResult> {
  let up = 0;
  let down = 0;
  caller.on("data", (c: Uint8Array) => (up += c.byteLength));
  provider.on("data", (c: Uint8Array) => (down += c.byteLength));
  caller.pipe(provider);
  provider.pipe(caller);
  const closed = (s: ServerHttp2Stream) =>
    new Promise<boolean>((resolve) => {
      s.on("error", () => {}); // reported through `close`; the other side is torn down below
      s.on("close", () => {
        const clean = s.readableEnded && (s.rstCode ?? 0) === constants.NGHTTP2_NO_ERROR;
        if (!clean) abort(s === caller ? provider : caller, s.rstCode);
        resolve(clean);
      });
    });
  return Promise.all([closed(caller), closed(provider)]).then(([a, b]) => ({
    up,
    down,
    clean: a && b,
  }));
}

function abort(stream: ServerHttp2Stream, code: number | undefined): void {
  if (stream.destroyed || stream.closed) return;
  stream.close(code && code !== constants.NGHTTP2_NO_ERROR ? code : constants.NGHTTP2_CANCEL);
}
