/**
 * The SOCKS5 front end of the proxy (RFC 1928): method negotiation (only
 * "no authentication": the proxy listens on loopback), then one CONNECT
 * request by domain name (or an address, which no mesh name is), answered
 * with a reply code before any byte of the tunnel flows.
 *
 * Reply codes: 0 succeeded; 2 not allowed (the provider refused the caller);
 * 3 network unreachable (no provider online, the mesh is not running);
 * 4 host unreachable (an unknown, malformed or ambiguous name); 5 connection
 * refused (the service's target did not answer); 7 command not supported
 * (BIND, UDP ASSOCIATE); 8 address type not supported; 1 anything else.
 * SOCKS has no room for a message: the reason goes to the log, one line.
 */
import { ConnReader, ProxyInputError } from "./conn_reader.ts";
import { logRefusal, type ProxyContext, refusalOf, relay } from "./relay.ts";

/** The protocol version byte; also how the server tells SOCKS5 from HTTP. */
export const SOCKS5_VERSION = 0x05;
/** Largest greeting plus request: 2 + 255 methods, 4 + 1 + 255 name + 2 port. */
export const MAX_SOCKS_BYTES = 600;

/** SOCKS5 reply codes (RFC 1928 section 6). */
export const REPLY = {
  succeeded: 0,
  generalFailure: 1,
  notAllowed: 2,
  networkUnreachable: 3,
  hostUnreachable: 4,
  connectionRefused: 5,
  commandNotSupported: 7,
  addressTypeNotSupported: 8,
} as const;

const NO_AUTH = 0x00;
const NO_ACCEPTABLE_METHOD = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** A SOCKS request refused before dialing, with its reply code. */
class SocksRefusal extends ProxyInputError {
  constructor(readonly reply: number, message: string) {
    super(message);
  }
}

/** The reply code for a refusal of the given status (see the module comment). */
export function socksReplyOf(status: number, code: string): number {
  if (status === 403 || status === 429) return REPLY.notAllowed;
  if (status === 503) return REPLY.networkUnreachable;
  if (status === 400 || status === 404 || status === 409) return REPLY.hostUnreachable;
  if (code === "target_unreachable") return REPLY.connectionRefused;
  return REPLY.generalFailure;
}

/** A reply: version, code, reserved, and a zero IPv4 bound address. */
export function socksReply(code: number): Uint8Array {
  return new Uint8Array([SOCKS5_VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** Reads the greeting (answering the method) and the request; returns the destination. */
async function readRequest(
  conn: Deno.Conn,
  reader: ConnReader,
): Promise<{ host: string; port: number }> {
  const [version, count] = await reader.exactly(2);
  if (version !== SOCKS5_VERSION) throw new ProxyInputError(`not SOCKS5 (version ${version})`);
  const methods = await reader.exactly(count);
  if (!methods.includes(NO_AUTH)) {
    await conn.write(new Uint8Array([SOCKS5_VERSION, NO_ACCEPTABLE_METHOD]));
    throw new ProxyInputError("the client offers no method this proxy accepts (no authentication)");
  }
  await conn.write(new Uint8Array([SOCKS5_VERSION, NO_AUTH]));
  const [v, cmd, _rsv, atyp] = await reader.exactly(4);
  if (v !== SOCKS5_VERSION) {
    throw new SocksRefusal(REPLY.generalFailure, `bad request version ${v}`);
  }
  let host: string;
  if (atyp === ATYP_DOMAIN) {
    const [len] = await reader.exactly(1);
    const raw = await reader.exactly(len);
    host = new TextDecoder("utf-8", { fatal: false }).decode(raw);
    if (len === 0) throw new SocksRefusal(REPLY.hostUnreachable, "empty host name");
  } else if (atyp === ATYP_IPV4) {
    host = [...(await reader.exactly(4))].join(".");
  } else if (atyp === ATYP_IPV6) {
    const b = await reader.exactly(16);
    const words = [];
    for (let i = 0; i < 16; i += 2) words.push(((b[i] << 8) | b[i + 1]).toString(16));
    host = `[${words.join(":")}]`;
  } else {
    throw new SocksRefusal(REPLY.addressTypeNotSupported, `address type ${atyp} is not supported`);
  }
  const p = await reader.exactly(2);
  const port = (p[0] << 8) | p[1];
  if (cmd !== CMD_CONNECT) {
    throw new SocksRefusal(
      REPLY.commandNotSupported,
      `command ${cmd} is not supported (CONNECT only)`,
    );
  }
  return { host, port };
}

/**
 * Serves one SOCKS5 client whose first byte is buffered in `reader`: reads
 * its request, dials, replies, and relays until the connection ends. Never
 * throws; closes `conn` when done.
 */
export async function serveSocks5(
  conn: Deno.Conn,
  reader: ConnReader,
  ctx: ProxyContext,
): Promise<void> {
  let dest: { host: string; port: number };
  try {
    dest = await readRequest(conn, reader);
  } catch (err) {
    const reply = err instanceof SocksRefusal ? err.reply : REPLY.generalFailure;
    const message = err instanceof Error ? err.message : String(err);
    ctx.log.info("proxy request malformed", { mesh: ctx.mesh, method: "SOCKS5", err: message });
    if (err instanceof SocksRefusal) await conn.write(socksReply(reply)).catch(() => {});
    close(conn);
    return;
  }
  let tunnel;
  try {
    tunnel = await ctx.dial(dest.host, dest.port);
  } catch (err) {
    const refusal = refusalOf(err);
    logRefusal(ctx, "SOCKS5", dest.host, refusal);
    await conn.write(socksReply(socksReplyOf(refusal.status, refusal.code))).catch(() => {});
    close(conn);
    return;
  }
  try {
    await conn.write(socksReply(REPLY.succeeded));
  } catch {
    tunnel.leg.abort();
    tunnel.release(false);
    close(conn);
    return;
  }
  await relay(ctx, conn, tunnel, reader.rest());
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
