/**
 * The HTTP front end of the proxy: `CONNECT host:port` (answered `200
 * Connection Established`, then the tunnel carries whatever the client
 * speaks, usually TLS) and plain-HTTP proxying of absolute-form requests
 * (`GET http://web.mesh/path HTTP/1.1`), whose head is rewritten to
 * origin-form, loses the hop-by-hop `Proxy-*` and `Connection` headers, and
 * gains `Connection: close`: each proxied connection carries one request to
 * one service, and the client opens a new one for the next.
 *
 * Refusals are plain-text responses: 400 for a malformed request, 502 for an
 * unknown name or a failed tunnel, 403 when the provider refused the
 * caller, 409 for a name several users offer, 503 when no provider is
 * online; one log line each.
 */
import { ConnReader, ProxyInputError } from "./conn_reader.ts";
import { logRefusal, type ProxyContext, refusalOf, relay } from "./relay.ts";

/** Largest request head read (request line and headers). */
export const MAX_HEAD_BYTES = 16 * 1024;

const HEAD_END = new TextEncoder().encode("\r\n\r\n");
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the proxy consumes rather than forwards. */
const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "proxy-authorization",
  "keep-alive",
  "te",
  "upgrade",
]);

/** A parsed proxy request. */
export interface HttpProxyRequest {
  method: string;
  host: string;
  port: number;
  /** For plain HTTP, the head to send to the service; null for CONNECT. */
  head: Uint8Array | null;
}

/** `host:port` or `[v6]:port`; the port defaults to `defaultPort`. */
function splitAuthority(authority: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\[\]/@?#\s]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) throw new ProxyInputError(`bad authority "${authority.slice(0, 100)}"`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) {
    throw new ProxyInputError(`bad port in "${authority.slice(0, 100)}"`);
  }
  return { host: m[1], port };
}

/**
 * Parses a request head (through its blank line). Throws `ProxyInputError`
 * for anything but `CONNECT host:port` or an absolute `http://` request.
 */
export function parseProxyHead(raw: Uint8Array): HttpProxyRequest {
  // latin1 keeps every byte; header values are opaque and forwarded as they came.
  const text = new TextDecoder("latin1").decode(raw);
  const lines = text.slice(0, -4).split("\r\n");
  // A bare CR or LF, or a NUL, would end a line differently for the service than for us.
  if (lines.some((l) => /[\r\n\0]/.test(l))) {
    throw new ProxyInputError("a bare CR, LF or NUL in the request head");
  }
  const start = lines[0].split(" ");
  if (start.length !== 3 || !TOKEN.test(start[0]) || !/^HTTP\/1\.[01]$/.test(start[2])) {
    throw new ProxyInputError(`bad request line "${lines[0].slice(0, 100)}"`);
  }
  const [method, target, version] = start;
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) {
      throw new ProxyInputError(`bad header line "${line.slice(0, 100)}"`);
    }
    headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  if (method === "CONNECT") {
    const { host, port } = splitAuthority(target, 0);
    if (port === 0) throw new ProxyInputError("CONNECT needs host:port");
    return { method, host, port, head: null };
  }
  if (!/^http:\/\//i.test(target)) {
    throw new ProxyInputError(
      `not a proxy request: "${target.slice(0, 100)}" (use an absolute http:// URL or CONNECT)`,
    );
  }
  const rest = target.slice("http://".length);
  const slash = rest.search(/[/?#]/);
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  let path = slash < 0 ? "/" : rest.slice(slash);
  if (path.startsWith("?")) path = `/${path}`;
  path = path.replace(/#.*$/, "");
  const { host, port } = splitAuthority(authority, 80);
  const kept = headers.filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()));
  if (!kept.some(([name]) => name.toLowerCase() === "host")) kept.unshift(["Host", authority]);
  const head = [
    `${method} ${path} ${version}`,
    ...kept.map(([n, v]) => `${n}: ${v}`),
    "Connection: close",
    "",
    "",
  ].join("\r\n");
  return { method, host, port, head: latin1(head) };
}

function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  409: "Conflict",
  429: "Too Many Requests",
  502: "Bad Gateway",
  503: "Service Unavailable",
};

/** The HTTP status a refusal is answered with (see the module comment). */
export function httpStatusOf(status: number): number {
  if (status === 403 || status === 409 || status === 429 || status === 503) return status;
  return 502;
}

/** A plain-text response that closes the connection. */
export function plainResponse(status: number, message: string): Uint8Array {
  const body = new TextEncoder().encode(`${message}\n`);
  const head = latin1(
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.byteLength}\r\n` +
      `Connection: close\r\n\r\n`,
  );
  return concat(head, body);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/**
 * Serves one HTTP proxy client whose first bytes are buffered in `reader`:
 * reads its head, dials, answers or forwards the rewritten head, and relays
 * until the connection ends. Never throws; closes `conn` when done.
 */
export async function serveHttpProxy(
  conn: Deno.Conn,
  reader: ConnReader,
  ctx: ProxyContext,
): Promise<void> {
  let request: HttpProxyRequest;
  try {
    request = parseProxyHead(await reader.through(HEAD_END));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.log.info("proxy request malformed", { mesh: ctx.mesh, method: "HTTP", err: message });
    await write(conn, plainResponse(400, `Bad proxy request: ${message}`));
    close(conn);
    return;
  }
  let tunnel;
  try {
    tunnel = await ctx.dial(request.host, request.port);
  } catch (err) {
    const refusal = refusalOf(err);
    logRefusal(ctx, request.method, request.host, refusal);
    await write(conn, plainResponse(httpStatusOf(refusal.status), refusal.message));
    close(conn);
    return;
  }
  let first: Uint8Array;
  if (request.head === null) {
    if (!(await write(conn, latin1("HTTP/1.1 200 Connection Established\r\n\r\n")))) {
      tunnel.leg.abort();
      tunnel.release(false);
      close(conn);
      return;
    }
    first = reader.rest();
  } else {
    first = concat(request.head, reader.rest());
  }
  await relay(ctx, conn, tunnel, first);
}

async function write(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
  try {
    let at = 0;
    while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
    return true;
  } catch {
    return false;
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
