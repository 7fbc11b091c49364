/**
 * What the SOCKS5 and HTTP front ends share once a client's handshake is
 * read: the context they dial through, one log line per refusal, and the
 * splice of the client connection with its tunnel.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { connLeg, splice } from "@ztm/shared/splice";
import type { Tally } from "../tunnel_state.ts";
import type { DialedTunnel } from "./mesh_dialer.ts";

/** What a front end needs to serve one client. */
export interface ProxyContext {
  mesh: string;
  log: Logger;
  /** Opens a tunnel to `host` (`MeshDialer.dial`); throws `ZtmError` refusals. */
  dial(host: string, port: number): Promise<DialedTunnel>;
  /** Where connections, bytes and the last refusal are counted (as a port mapping's are). */
  tally?: Tally;
  /** Told when the handshake is over and the relay starts (the server's setup deadline ends). */
  established?(): void;
}

/** The refusal's status, code and message: a `ZtmError`'s own, else a generic 502. */
export function refusalOf(err: unknown): { status: number; code: string; message: string } {
  const e = err instanceof ZtmError
    ? err
    : agentError("tunnel_failed", `The tunnel failed: ${errText(err)}`);
  return { status: e.status, code: e.code, message: e.message };
}

/** Logs one line for a refused proxy request (`method`: `SOCKS5`, `CONNECT`, `GET`, …). */
export function logRefusal(
  ctx: ProxyContext,
  method: string,
  host: string,
  refusal: { status: number; code: string; message: string },
): void {
  ctx.tally?.refused(refusal.code, refusal.message);
  ctx.log.info("proxy refused", {
    mesh: ctx.mesh,
    method,
    service: host.slice(0, 255),
    status: refusal.status,
    err: refusal.message,
  });
}

/**
 * Splices `client` with the tunnel until both directions end, after sending
 * `first` (bytes the client sent behind its handshake) into the tunnel.
 * Releases the tunnel and closes the client.
 */
export async function relay(
  ctx: ProxyContext,
  client: Deno.Conn,
  tunnel: DialedTunnel,
  first: Uint8Array,
): Promise<void> {
  ctx.established?.();
  let clean = false;
  try {
    if (first.byteLength > 0) await tunnel.leg.write(first);
    const local = connLeg(client);
    ({ clean } = await splice(ctx.tally?.track(local, "up") ?? local, tunnel.leg));
  } catch {
    tunnel.leg.abort();
    try {
      client.close();
    } catch { /* already closed */ }
  } finally {
    tunnel.release(clean);
  }
}
