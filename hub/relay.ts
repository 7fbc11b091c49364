/**
 * The hub's data path seam: joins a tunnel's caller leg and provider leg.
 * Either leg is an HTTP/2 stream on the agent's control session or a TLS
 * connection on the data port (`shared/splice.ts` moves the bytes).
 *
 * Data-port connections carry frames (`framedLeg`), so a half-close travels
 * in-band. Between two of them the hub copies bytes untouched — frames and
 * end frames pass through, and the hub never half-closes a TLS connection;
 * when one side is an HTTP/2 stream, the hub unframes and frames.
 */
import { constants, type ServerHttp2Stream } from "node:http2";
import {
  connLeg,
  framedLeg,
  type Leg,
  splice,
  type SpliceResult,
  streamLeg,
} from "@ztm/shared/splice";

/** A data-port connection and the bytes that came right after its ticket line. */
export interface DataConn {
  conn: Deno.TlsConn;
  rest: Uint8Array;
}

/** One side of a tunnel before the two are joined. */
export type TunnelLeg = { h2: ServerHttp2Stream } | { data: DataConn };

/** A leg over an HTTP/2 stream; aborting resets it (errors only, see DESIGN section 8). */
export function h2Leg(stream: ServerHttp2Stream): Leg {
  return streamLeg(stream, () => {
    if (!stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
  });
}

/** A raw leg over a data-port connection: `rest` first; half-closes are frames, so `closeWrite` does nothing. */
function rawLeg(d: DataConn): Leg {
  const leg = connLeg(d.conn);
  let first: Uint8Array | undefined = d.rest.byteLength ? d.rest : undefined;
  return {
    ...leg,
    read() {
      const chunk = first;
      first = undefined;
      return chunk ? Promise.resolve(chunk) : leg.read();
    },
    closeWrite: () => Promise.resolve(),
  };
}

/** Tears down a leg that never got relayed. */
export function abortLeg(leg: TunnelLeg): void {
  if ("h2" in leg) h2Leg(leg.h2).abort();
  else {
    try {
      leg.data.conn.close();
    } catch { /* already closed */ }
  }
}

/** The two legs ready to splice. */
export function joinLegs(caller: TunnelLeg, provider: TunnelLeg): [Leg, Leg] {
  if ("data" in caller && "data" in provider) return [rawLeg(caller.data), rawLeg(provider.data)];
  const leg = (l: TunnelLeg) => "h2" in l ? h2Leg(l.h2) : framedLeg(rawLeg(l.data));
  return [leg(caller), leg(provider)];
}

/** Relays two joined legs until both directions end or one fails. */
export function relay(caller: Leg, provider: Leg): Promise<SpliceResult> {
  return splice(caller, provider);
}
