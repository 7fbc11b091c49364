/**
 * The hub's data path seam: relays a tunnel between its caller leg and its
 * provider leg. Either leg is an HTTP/2 stream on the agent's control session
 * or a data link (a TLS connection on the data port, `shared/data_link.ts`).
 *
 * Data links carry frames (`framedLeg`), so a half-close travels in-band.
 * Between two links the hub copies bytes untouched — it only follows the
 * frame lengths (`FrameScanner`) to see each direction's end frame, so both
 * links can carry the next tunnel — and never half-closes a TLS connection.
 * When one side is an HTTP/2 stream, the hub unframes and frames.
 */
import { constants, type ServerHttp2Stream } from "node:http2";
import { type DataLink, writeAll } from "@ztm/shared/data_link";
import { FrameScanner, type Leg, splice, type SpliceResult, streamLeg } from "@ztm/shared/splice";
import type { BoundLink } from "./data_links.ts";

/** One side of a tunnel. */
export type TunnelLeg = { h2: ServerHttp2Stream } | { link: BoundLink };

/** A leg over an HTTP/2 stream; aborting resets it (errors only, see DESIGN section 8). */
export function h2Leg(stream: ServerHttp2Stream): Leg {
  return streamLeg(stream, () => resetStream(stream));
}

function resetStream(stream: ServerHttp2Stream): void {
  if (!stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
}

/** Tears a leg down (a failed or revoked tunnel). */
export function abortLeg(leg: TunnelLeg): void {
  if ("h2" in leg) resetStream(leg.h2);
  else leg.link.link.close();
}

/** Relays two legs until both directions end or one fails; `clean` says whether links may be reused. */
export function relay(caller: TunnelLeg, provider: TunnelLeg): Promise<SpliceResult> {
  if ("link" in caller && "link" in provider) {
    return relayLinks(caller.link.link, provider.link.link);
  }
  const leg = (l: TunnelLeg) => "h2" in l ? h2Leg(l.h2) : l.link.link.framed();
  return splice(leg(caller), leg(provider));
}

/** Copies frames both ways between two links, each direction up to and including its end frame. */
async function relayLinks(a: DataLink, b: DataLink): Promise<SpliceResult> {
  let clean = true;
  const pump = async (from: DataLink, to: DataLink): Promise<number> => {
    const scanner = new FrameScanner();
    const leg = from.leg();
    let n = 0;
    try {
      while (true) {
        const chunk = await leg.read();
        if (chunk === null) throw new Error("data link ended inside a tunnel");
        const end = scanner.feed(chunk);
        const part = end < 0 ? chunk : chunk.subarray(0, end);
        await writeAll(to.conn, part);
        n += part.byteLength;
        if (end >= 0) {
          from.unread(chunk.subarray(end));
          return n;
        }
      }
    } catch {
      clean = false;
      a.close();
      b.close();
      return n;
    }
  };
  const [ab, ba] = await Promise.all([pump(a, b), pump(b, a)]);
  return { ab, ba, clean };
}
