/**
 * A small warm pool of native TLS connections to the hub's data port, so a
 * new tunnel gets a fast data leg without paying a handshake (and without the
 * ~40 ms small-write stalls of Nagle plus delayed ACK: connections are dialled
 * as TCP with no-delay, then upgraded to TLS).
 *
 * The pool is warm only while the endpoint is busy — after a tunnel, for
 * `activeMs` — so an idle endpoint holds no data connection on the hub (what
 * 10,000 endpoints on one hub can afford). When the pool is empty, a tunnel
 * dials its own; only without a usable data port does it fall back to an
 * HTTP/2 stream on the control session. Connections are recycled before the
 * hub's idle limit would close them.
 *
 * The hub's certificate is checked as on the control session: chained to the
 * mesh CA and naming the dialled host; rustls also refuses a certificate
 * without the serverAuth role (tested: a user certificate is refused).
 *
 * Tunnels never half-close these connections (`closeWrite`); the end of each
 * direction travels as a frame instead (see `framedLeg`). A connection whose
 * tunnel ended cleanly becomes a data link (`shared/data_link.ts`) bound to
 * this endpoint's control session: a caller's link is kept here for the next
 * `open`, a provider's is parked at the hub, which sends the next tunnel to
 * this endpoint down it (`incoming`). Links are kept while the pool is warm,
 * at most `maxLinks` of each kind.
 */
import type { DataLink } from "@ztm/shared/data_link";
import { ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { checkLinkMessage, type LinkMessage } from "@ztm/shared/protocol";
import { RefusalLog } from "@ztm/shared/refusal_log";

/** Where the data port is, and whom to trust there. */
export interface DataTarget {
  hostname: string;
  port: number;
  caPem: string;
}

/** Tuning of the pool. */
export interface DataPoolOptions {
  log: Logger;
  mesh: string;
  /** Idle connections kept while warm. */
  size?: number;
  /** How long the pool stays warm after the last use. */
  activeMs?: number;
  /** Connections older than this are recycled (below the hub's 30 s idle limit). */
  maxAgeMs?: number;
  /** Data links kept between tunnels, of each kind. */
  maxLinks?: number;
}

/** Handles a tunnel the hub sent down a parked link; resolves true when the link may carry another. */
export type IncomingHandler = (
  msg: Extract<LinkMessage, { type: "incoming" }>,
  link: DataLink,
) => Promise<boolean>;

/**
 * Dials in flight beyond which a tunnel takes the HTTP/2 path. That path is a
 * last resort: Deno 2.9.3's `node:http2` completes stream writes before flow
 * control lets the bytes out (fixed upstream in denoland/deno#36044), so it
 * does not bound memory the way data connections do.
 */
const MAX_DIALS = 32;

interface Idle {
  conn: Deno.TlsConn;
  born: number;
}

/** Warm data connections for one mesh. Methods are synchronous unless noted; none after `close()`. */
export class DataPool {
  #opts: Required<Omit<DataPoolOptions, "log" | "mesh">> & DataPoolOptions;
  #target: DataTarget | undefined;
  #idle: Idle[] = [];
  #connecting = 0;
  #activeUntil = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #failures = 0;
  /** Idle caller links, newest last. */
  #links: DataLink[] = [];
  /** Provider links parked at the hub, waiting for `incoming`. */
  #parked = new Set<DataLink>();
  /** Links carrying a tunnel now. */
  #busy = new Set<DataLink>();
  #onIncoming: IncomingHandler | undefined;
  /** Lines on parked links that were not a data-link message (the link is closed for each). */
  #refusals: RefusalLog;

  constructor(opts: DataPoolOptions) {
    this.#opts = { size: 8, activeMs: 60_000, maxAgeMs: 20_000, maxLinks: 16, ...opts };
    this.#refusals = new RefusalLog(opts.log, "bad data link message from hub", {
      mesh: opts.mesh,
    });
  }

  /** Where tunnels that arrive on parked links go. */
  serveIncoming(handler: IncomingHandler): void {
    this.#onIncoming = handler;
  }

  /** An idle caller link, or undefined. Marks the pool busy. */
  takeLink(): DataLink | undefined {
    this.touch();
    while (this.#links.length) {
      const link = this.#links.pop()!;
      if (!link.closed) return this.track(link);
    }
    return undefined;
  }

  /** Counts `link` as carrying a tunnel until `release()`, so a lost session can end it. */
  track(link: DataLink): DataLink {
    this.#busy.add(link);
    return link;
  }

  /**
   * The control session is gone, and with it every link bound to it: closes
   * idle and parked links and ends the tunnels on busy ones (through a NAT
   * that lost its state they would otherwise hang until TCP gives up).
   */
  sessionLost(): void {
    this.#drain();
    for (const link of this.#busy) link.close();
    this.#busy.clear();
  }

  /**
   * Gives back a link after its tunnel: kept (`out`) or parked (`in`) when
   * the tunnel ended cleanly and the pool is warm and not full, else closed.
   */
  release(link: DataLink, role: "in" | "out", clean: boolean): void {
    this.#busy.delete(link);
    const keep = clean && !link.closed && !this.#closed && this.#target !== undefined &&
      this.#active();
    if (keep && role === "out" && this.#links.length < this.#opts.maxLinks) {
      this.#links.push(link);
    } else if (keep && role === "in" && this.#parked.size < this.#opts.maxLinks) {
      this.#park(link).catch((err) => {
        this.#refusals.refused("park_failed", errText(err));
        link.close();
      });
    } else link.close();
  }

  /**
   * Sets (or clears) the hub's data port, on every (re)connection to the hub.
   * Idle connections are dropped even for the same address: a reconnection
   * may mean the hub restarted, and a connection it no longer knows could
   * swallow a ticket.
   */
  setTarget(target: DataTarget | undefined): void {
    this.#target = target;
    this.#drain();
    this.#failures = 0;
    if (target && this.#active()) this.#refill();
  }

  /** True when the hub has a data port and dialling it has not been failing. */
  get available(): boolean {
    return this.#target !== undefined && this.#failures < 3;
  }

  /**
   * A warm connection if there is one; else a fresh dial (started now, so it
   * overlaps the tunnel's setup); else — no data port, dialling it failing,
   * or `MAX_DIALS` in flight — undefined: use HTTP/2. Marks the pool busy.
   */
  connection(): Promise<Deno.TlsConn> | undefined {
    const warm = this.take();
    if (warm) return Promise.resolve(warm);
    if (!this.available || this.#connecting >= MAX_DIALS) return undefined;
    this.#connecting++;
    const dialing = this.dial();
    dialing.then(() => this.#connecting--, (err) => {
      this.#connecting--;
      this.#failed(err);
    });
    return dialing;
  }

  /** Marks the pool busy (warm for `activeMs` more) and tops it up. */
  touch(): void {
    if (this.#closed || !this.#target) return;
    this.#activeUntil = Date.now() + this.#opts.activeMs;
    this.#timer ??= setInterval(() => this.#tick(), 2_000);
    this.#refill();
  }

  /** A warm connection, or undefined (then use the HTTP/2 path). Marks the pool busy. */
  take(): Deno.TlsConn | undefined {
    this.touch();
    const now = Date.now();
    while (this.#idle.length) {
      const idle = this.#idle.shift()!;
      if (now - idle.born < this.#opts.maxAgeMs) {
        this.#refill();
        return idle.conn;
      }
      idle.conn.close();
    }
    return undefined;
  }

  /** Dials a fresh connection now (used to retry a ticket once). */
  async dial(): Promise<Deno.TlsConn> {
    const target = this.#target;
    if (!target) throw new Error("The hub has no data port");
    const tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
    try {
      tcp.setNoDelay(true);
      const tls = await Deno.startTls(tcp, { hostname: target.hostname, caCerts: [target.caPem] });
      await tls.handshake();
      return tls;
    } catch (err) {
      try {
        tcp.close();
      } catch { /* already closed */ }
      throw err;
    }
  }

  /** Closes every idle connection and stops refilling. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#drain();
  }

  #active(): boolean {
    return Date.now() < this.#activeUntil;
  }

  #drain(): void {
    for (const i of this.#idle) i.conn.close();
    this.#idle = [];
    for (const link of this.#links) link.close();
    this.#links = [];
    for (const link of this.#parked) link.close();
    this.#parked.clear();
  }

  /** Waits on a parked link for the hub's next tunnel; serves it, then parks the link again. */
  async #park(link: DataLink): Promise<void> {
    this.#parked.add(link);
    let msg: LinkMessage | null;
    try {
      msg = await link.readMessage(checkLinkMessage);
    } catch (err) {
      if (err instanceof ZtmError) this.#refusals.refused(err.code, errText(err));
      else this.#opts.log.debug("data link dropped", { mesh: this.#opts.mesh, err: errText(err) });
      msg = null;
    }
    this.#parked.delete(link);
    if (msg?.type !== "incoming" || !this.#onIncoming) {
      if (msg) {
        this.#refusals.refused("out_of_order", `Data link message "${msg.type}" on a parked link`);
      }
      return link.close();
    }
    this.track(link);
    this.touch();
    let again = false;
    try {
      again = await this.#onIncoming(msg, link);
    } catch (err) {
      this.#opts.log.info("tunnel session failed", { mesh: this.#opts.mesh, err: errText(err) });
    }
    this.release(link, "in", again);
  }

  #tick(): void {
    const now = Date.now();
    this.#idle = this.#idle.filter((i) => {
      if (now - i.born < this.#opts.maxAgeMs) return true;
      i.conn.close();
      return false;
    });
    if (this.#active()) {
      this.#refill();
    } else {
      // Cold: nothing stays open on the hub (links carrying a tunnel close when it ends).
      this.#drain();
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Counts a failed dial; after three in a row, tunnels use HTTP/2 for a while. */
  #failed(err?: unknown): void {
    if (++this.#failures !== 3) return;
    this.#opts.log.warn("data port unreachable; tunnels use HTTP/2 for now", {
      mesh: this.#opts.mesh,
      err: err === undefined ? undefined : errText(err),
    });
    setTimeout(() => (this.#failures = 0), 10_000);
  }

  #refill(): void {
    if (this.#closed || !this.#target || this.#failures >= 3) return;
    while (this.#idle.length + this.#connecting < this.#opts.size) {
      this.#connecting++;
      const target = this.#target;
      this.dial().then((conn) => {
        this.#connecting--;
        this.#failures = 0;
        if (this.#closed || this.#target !== target || !this.#active()) conn.close();
        else this.#idle.push({ conn, born: Date.now() });
      }, (err) => {
        this.#connecting--;
        // Stop retrying after a few failures in a row until the next tick or target: tunnels use HTTP/2 meanwhile.
        if (++this.#failures === 3) {
          this.#opts.log.warn("data port unreachable; tunnels use HTTP/2", {
            mesh: this.#opts.mesh,
            err: errText(err),
          });
          setTimeout(() => (this.#failures = 0), 10_000);
        }
      });
    }
  }
}

/** Writes the ticket line that attaches `conn` to its tunnel side on the hub. */
export async function presentTicket(conn: Deno.Conn, ticket: string): Promise<void> {
  const line = new TextEncoder().encode(`ZTM1 ${ticket}\n`);
  let at = 0;
  while (at < line.byteLength) at += await conn.write(line.subarray(at));
}
