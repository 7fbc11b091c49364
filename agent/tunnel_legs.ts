/**
 * The agent's side of a tunnel's data leg: either a warm TLS connection to
 * the hub's data port (presenting the hub's ticket), or the HTTP/2 stream on
 * the control session when no warm connection is at hand. Both become a
 * `Leg` that `splice` joins with the local TCP connection. Data connections
 * carry frames, so a half-close travels in-band (see `framedLeg`).
 */
import { type ClientHttp2Stream, constants } from "node:http2";
import { errText, type Logger } from "@ztm/shared/log";
import { connLeg, framedLeg, type Leg, streamLeg } from "@ztm/shared/splice";
import { type DataPool, presentTicket } from "./data_pool.ts";

/** A leg over a tunnel's HTTP/2 stream; aborting resets it (errors only). */
export function h2Leg(stream: ClientHttp2Stream): Leg {
  return streamLeg(stream, () => {
    if (!stream.destroyed && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
  });
}

/**
 * Presents `ticket` on the connection `data` resolves to (warm or being
 * dialled); if that fails, dials once more and presents it there. Resolves
 * with the leg, or rejects.
 */
export async function ticketLeg(
  pool: DataPool,
  data: Promise<Deno.TlsConn>,
  ticket: string,
  log: Logger,
): Promise<Leg> {
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await data;
    await presentTicket(conn, ticket);
    return framedLeg(connLeg(conn));
  } catch (err) {
    try {
      conn?.close();
    } catch { /* already closed */ }
    log.debug("data connection failed; dialling again", { err: errText(err) });
    const fresh = await pool.dial();
    await presentTicket(fresh, ticket);
    return framedLeg(connLeg(fresh));
  }
}
