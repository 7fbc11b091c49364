/**
 * The proxy's listener: one TCP port that speaks SOCKS5 and HTTP, told
 * apart by the client's first byte (5 is SOCKS5's version; an HTTP request
 * starts with a method's letter). Each accepted connection gets a bounded
 * time to finish its handshake and a bounded buffer; the number of
 * connections is capped. It knows nothing of names or tunnels: it dials
 * through the function it is given (`MeshDialer.dial`).
 *
 * @example
 * ```ts
 * const proxy = new ProxyServer({ listen: { hostname: "127.0.0.1", port: 1080 }, mesh, log, dial });
 * proxy.listen();
 * await proxy.close();
 * ```
 */
import { errText, type Logger } from "@ztm/shared/log";
import { Tally } from "../tunnel_state.ts";
import { ConnReader } from "./conn_reader.ts";
import { MAX_HEAD_BYTES, serveHttpProxy } from "./http_proxy.ts";
import type { DialedTunnel } from "./mesh_dialer.ts";
import type { ProxyContext } from "./relay.ts";
import { MAX_SOCKS_BYTES, serveSocks5, SOCKS5_VERSION } from "./socks5.ts";

/** Time from accept to an open tunnel (handshake read, name resolved, tunnel opened). */
export const PROXY_SETUP_MS = 30_000;
/** Connections one proxy serves at once; more are closed at accept. */
export const MAX_PROXY_CONNECTIONS = 1024;

/** Options for `ProxyServer`. */
export interface ProxyServerOptions {
  listen: { hostname: string; port: number };
  mesh: string;
  log: Logger;
  dial(host: string, port: number): Promise<DialedTunnel>;
  setupMs?: number;
  maxConnections?: number;
}

/** One proxy listener. `close()` may be called once; nothing after it. */
export class ProxyServer {
  #opts: ProxyServerOptions;
  #listener: Deno.TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #live = new Set<Deno.Conn>();
  #full = false;
  /** Connections, bytes and the last refusal, as a port mapping counts them. */
  readonly tally: Tally = new Tally();

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
  }

  /** Binds the port. Throws Deno's `AddrInUse`, `AddrNotAvailable` or `PermissionDenied`. */
  listen(): void {
    const { listen, log, mesh } = this.#opts;
    this.#listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
    log.info("proxy listening", { mesh, addr: this.address });
    this.#accepting = this.#acceptLoop(this.#listener);
  }

  /** `host:port` the proxy is bound to (the real port when asked for 0). */
  get address(): string {
    const a = this.#listener?.addr as Deno.NetAddr | undefined;
    if (!a) return `${this.#opts.listen.hostname}:${this.#opts.listen.port}`;
    return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
  }

  /** The bound port. */
  get port(): number {
    return (this.#listener?.addr as Deno.NetAddr | undefined)?.port ?? this.#opts.listen.port;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#live.size;
  }

  /** Closes the listener and every connection; resolves once the port is released. */
  async close(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    try {
      listener?.close();
    } catch { /* already closed */ }
    for (const c of this.#live) closeQuietly(c);
    this.#live.clear();
    await this.#accepting;
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    const max = this.#opts.maxConnections ?? MAX_PROXY_CONNECTIONS;
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#listener !== listener || err instanceof Deno.errors.BadResource) return;
        this.#opts.log.warn("accept failed", { mesh: this.#opts.mesh, err: errText(err) });
        continue;
      }
      if (this.#live.size >= max) {
        if (!this.#full) {
          this.#opts.log.warn("proxy full: connections closed at accept", {
            mesh: this.#opts.mesh,
            count: max,
          });
        }
        this.#full = true;
        closeQuietly(conn);
        continue;
      }
      this.#full = false;
      this.#live.add(conn);
      // Never an unhandled rejection: one bad connection must not end the agent.
      this.#serve(conn)
        .catch((err) => {
          this.#opts.log.warn("proxy connection failed", {
            mesh: this.#opts.mesh,
            err: errText(err),
          });
          closeQuietly(conn);
        })
        .finally(() => this.#live.delete(conn));
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const { log, mesh } = this.#opts;
    const timer = setTimeout(() => {
      log.info("proxy request timed out", { mesh });
      closeQuietly(conn);
    }, this.#opts.setupMs ?? PROXY_SETUP_MS);
    const ctx: ProxyContext = {
      mesh,
      log,
      dial: this.#opts.dial,
      tally: this.tally,
      established: () => clearTimeout(timer),
    };
    try {
      try {
        (conn as Deno.TcpConn).setNoDelay(true);
      } catch { /* already reset by the client */ }
      const reader = new ConnReader(conn, Math.max(MAX_HEAD_BYTES, MAX_SOCKS_BYTES));
      let first: number | null;
      try {
        first = await reader.peek();
      } catch {
        first = null;
      }
      if (first === SOCKS5_VERSION) {
        await serveSocks5(conn, reader, ctx);
      } else if (first !== null && first >= 0x41 && first <= 0x5a) {
        await serveHttpProxy(conn, reader, ctx);
      } else {
        if (first === 0x04) {
          // A SOCKS4 client: "request rejected or failed", so it does not wait.
          await conn.write(new Uint8Array([0, 0x5b, 0, 0, 0, 0, 0, 0])).catch(() => {});
        }
        if (first !== null) {
          log.info("proxy request malformed", {
            mesh,
            err: `first byte 0x${first.toString(16).padStart(2, "0")} is neither SOCKS5 nor HTTP`,
          });
        }
        closeQuietly(conn);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
