/**
 * The hub's data path seam: joins a tunnel's caller leg and provider leg.
 * Either leg is an HTTP/2 stream on the agent's control session or a native
 * TLS connection on the data port (`shared/splice.ts` moves the bytes).
 */
import { constants, type ServerHttp2Stream } from "node:http2";
import { connLeg, type Leg, splice, type SpliceResult, streamLeg } from "@ztm/shared/splice";

/** A leg over an HTTP/2 stream; aborting resets it (errors only, see DESIGN section 8). */
export function h2Leg(stream: ServerHttp2Stream): Leg {
  return streamLeg(stream, () => {
    if (!stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
  });
}

/** A leg over a data-port connection; `rest` holds bytes that came right after the ticket line. */
export function dataLeg(conn: Deno.Conn, rest: Uint8Array): Leg {
  const leg = connLeg(conn);
  if (rest.byteLength === 0) return leg;
  let first: Uint8Array | undefined = rest;
  return {
    ...leg,
    read() {
      const chunk = first;
      first = undefined;
      return chunk ? Promise.resolve(chunk) : leg.read();
    },
  };
}

/** Relays `caller` and `provider` until both directions end or one fails. */
export function relay(caller: Leg, provider: Leg): Promise<SpliceResult> {
  return splice(caller, provider);
}
