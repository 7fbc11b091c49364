/**
 * Test helpers of the proxy's unit tests: a proxy on a loopback port whose
 * "tunnels" are plain TCP connections to loopback servers (so the front ends
 * are tested without a mesh), a tiny HTTP server that counts its
 * connections, and raw socket helpers with deadlines.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import { connLeg } from "@ztm/shared/splice";
import type { DialedTunnel } from "./mesh_dialer.ts";
import { ProxyServer } from "./server.ts";

/** Log lines a test's logger wrote, parsed. */
export type Lines = Record<string, unknown>[];

/** A logger that keeps its lines. */
export function memoryLog(): { log: Logger; lines: Lines } {
  const lines: Lines = [];
  return {
    log: new Logger("agent", { level: "debug", sink: (l) => lines.push(JSON.parse(l)) }),
    lines,
  };
}

/** An HTTP server on loopback answering `hello from NAME <path>`; counts accepted connections. */
export interface CountingHttp extends AsyncDisposable {
  port: number;
  accepted: number;
}

export function startHttp(name: string): CountingHttp {
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    return new Response(`hello from ${name} ${url.pathname}${url.search}\n`);
  });
  // Deno.serve counts no connections: a TCP front counts them and forwards each.
  return countingFront(http.addr.port, () => http.shutdown());
}

function countingFront(backend: number, stop: () => Promise<void>): CountingHttp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const live = new Set<Deno.Conn>();
  const out: CountingHttp = {
    port: listener.addr.port,
    accepted: 0,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of live) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await stop();
    },
  };
  (async () => {
    for await (const conn of listener) {
      out.accepted++;
      live.add(conn);
      Deno.connect({ hostname: "127.0.0.1", port: backend }).then(async (b) => {
        live.add(b);
        await Promise.allSettled([
          conn.readable.pipeTo(b.writable),
          b.readable.pipeTo(conn.writable),
        ]);
        live.delete(b);
        live.delete(conn);
      }, () => conn.close());
    }
  })().catch(() => {});
  return out;
}

/**
 * A proxy whose dial maps `NAME.mesh` to `routes[NAME]` (a loopback port);
 * `denied` names throw `Forbidden`, `errors` names throw the given error,
 * anything else `NotFound`.
 */
export function startTestProxy(
  routes: Record<string, number>,
  opts: { errors?: Record<string, ZtmError>; setupMs?: number; maxConnections?: number } = {},
): { proxy: ProxyServer; lines: Lines; dials: string[] } & AsyncDisposable {
  const { log, lines } = memoryLog();
  const dials: string[] = [];
  const proxy = new ProxyServer({
    listen: { hostname: "127.0.0.1", port: 0 },
    mesh: "test",
    log,
    setupMs: opts.setupMs,
    maxConnections: opts.maxConnections,
    async dial(host): Promise<DialedTunnel> {
      dials.push(host);
      const service = host.replace(/\.mesh\.?$/i, "");
      const err = opts.errors?.[service];
      if (err) throw err;
      if (service === "denied") {
        throw agentError("access_denied", `User "x" may not use tcp/denied`);
      }
      const port = routes[service];
      if (port === undefined) {
        throw agentError("unknown_service", `No endpoint offers tcp/${service}`);
      }
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      return {
        leg: connLeg(conn),
        release: () => {},
        target: { proto: "tcp", service, endpoint: "ep-test", user: "bob" },
      };
    },
  });
  proxy.listen();
  return { proxy, lines, dials, [Symbol.asyncDispose]: () => proxy.close() };
}

/** Rejects after `ms` with `what`. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Sends `bytes` on a fresh connection, half-closes it (so a cut request
 * ends; unless `halfClose` is false), and reads until the proxy closes (at most `max` bytes).
 */
export async function exchangeRaw(
  port: number,
  bytes: Uint8Array,
  opts: { halfClose?: boolean; max?: number } = {},
): Promise<Uint8Array> {
  const { halfClose = true, max = 64 * 1024 } = opts;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes).catch(() => 0);
    if (halfClose) await conn.closeWrite().catch(() => {});
    return await deadline(readAll(conn, max), 10_000, "the proxy's answer");
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Reads until the end (or an error, or `max` bytes). */
export async function readAll(conn: Deno.Conn, max = 64 * 1024): Promise<Uint8Array> {
  const out: number[] = [];
  const buf = new Uint8Array(4096);
  try {
    while (out.length < max) {
      const n = await conn.read(buf);
      if (n === null) break;
      out.push(...buf.subarray(0, n));
    }
  } catch { /* reset: what came is what we have */ }
  return new Uint8Array(out);
}

/** Runs `curl` with `args`; returns its exit code, stdout and stderr. */
export async function curl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Both ends of one loopback TCP connection, `[client, server]`; the caller closes them. */
export async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept();
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    return [client, await accepted];
  } finally {
    listener.close();
  }
}

/** Closes `conns`, ignoring ones already closed. */
export function closeAll(...conns: { close(): void }[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}
