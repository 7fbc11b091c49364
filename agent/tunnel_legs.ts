/**
 * The agent's side of a tunnel's data leg: a data link (a TLS connection to
 * the hub's data port: kept from an earlier tunnel, or warm or fresh and
 * presenting the hub's ticket), or the HTTP/2 stream on the control session
 * when no data connection is at hand. Either becomes a `Leg` that `splice`
 * joins with the local TCP connection. Data links carry frames, so a
 * half-close travels in-band (see `framedLeg`).
 */
import { type ClientHttp2Stream, constants } from "node:http2";
import { DataLink } from "@ztm/shared/data_link";
import { errText, type Logger } from "@ztm/shared/log";
import { type Leg, streamLeg } from "@ztm/shared/splice";
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
 * with the link, or rejects.
 */
export async function ticketLink(
  pool: DataPool,
  data: Promise<Deno.TlsConn>,
  ticket: string,
  log: Logger,
): Promise<DataLink> {
  let conn: Deno.TlsConn | undefined;
  try {
    conn = await data;
    await presentTicket(conn, ticket);
    return pool.track(new DataLink(conn));
  } catch (err) {
    try {
      conn?.close();
    } catch { /* already closed */ }
    log.debug("data connection failed; dialling again", { err: errText(err) });
    const fresh = await pool.dial();
    await presentTicket(fresh, ticket);
    return pool.track(new DataLink(fresh));
  }
}
