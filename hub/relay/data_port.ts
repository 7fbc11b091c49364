/**
 * The hub's data port: plain TCP where agents present a one-time ticket
 * (`ZTM2 <ticket>\n`, see `shared/peer_protocol.ts`) and are spliced to the
 * other side of their pair. The hub copies bytes both ways and never looks
 * at them: they are the agents' end-to-end TLS, so the hub can neither read
 * nor alter a tunnel without the agents noticing.
 *
 * What it keeps from a stranger: a connection costs one descriptor and a
 * {@link PREAMBLE_BYTES}-byte buffer until its preamble arrives, at most
 * `ticketMs`; all addresses together hold at most `total` such connections,
 * counted until the socket is really released (its read has ended). Relay
 * buffers are allocated only for a valid, paired ticket. `total` is also
 * held under a quarter of the process's descriptor limit (read from
 * `/proc/self/limits`, so a lowered limit takes effect within seconds), so
 * strangers can never take the descriptors members need to join.
 *
 * Members come first: addresses with a live member session (the control
 * code says which, `memberOnline`/`memberOffline`) share their own allowance
 * of `total` waiting connections that strangers elsewhere cannot touch, and
 * strangers never evict them. Within each allowance, at the cap a newcomer
 * evicts the oldest waiting connection of the address that holds the most,
 * if that connection has waited {@link GRACE_MS} and that address holds
 * more than the newcomer's would after admitting it; else the newcomer is
 * refused. So strangers, on however many addresses, only push each other
 * out, and hold at most `total` descriptors (members' addresses `total`
 * more); and a member's address hoarding idle connections (a malicious
 * member, or strangers behind its NAT) only pushes out its own.
 * Refusals are counted, not logged one by one, and accept errors (EMFILE)
 * back off instead of spinning.
 *
 * Control hands this plain values: the tickets it minted, and which sessions
 * closed and which serials were revoked. This module never calls back.
 */
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import {
  MAX_PAIRS_PER_PEER,
  PAIR_WAIT_MS,
  parsePreamble,
  PREAMBLE_BYTES,
  TICKET_READ_MS,
} from "@ztm/shared/peer_protocol";
import { connLeg, type Leg, splice } from "@ztm/shared/splice";
import type { ClaimedTicket, Tickets } from "../tickets.ts";
import { readFdLimit } from "../connection_gate.ts";

/** Limits of the data port. */
export interface DataPortLimits {
  /** How long a connection may take to send its preamble. */
  ticketMs: number;
  /** How long a ticketed leg waits for its partner. */
  pairWaitMs: number;
  /** Connections without a valid ticket yet, in all. */
  total: number;
  /**
   * Splices one caller certificate may hold at once (two descriptors each): a
   * member calling its own second endpoint, which never closes a pair, must
   * not take every descriptor of the hub.
   */
  splicesPerCaller: number;
}

/** Defaults for `DataPortLimits`. */
export const DEFAULT_DATA_LIMITS: DataPortLimits = {
  ticketMs: TICKET_READ_MS,
  pairWaitMs: PAIR_WAIT_MS,
  total: 4_096,
  splicesPerCaller: 4 * MAX_PAIRS_PER_PEER,
};

/** What the data port needs. */
export interface DataPortOptions {
  listen: HostPort;
  tickets: Tickets;
  log: Logger;
  limits?: Partial<DataPortLimits>;
  /** Told the bytes copied, as they are read (either direction). */
  onRelayed?: (bytes: number) => void;
}

interface Waiting {
  conn: Deno.TcpConn;
  grant: ClaimedTicket;
  timer: ReturnType<typeof setTimeout>;
}

interface Splice {
  sessions: object[];
  serials: string[];
  abort: () => void;
}

const REFUSAL_LOG_MS = 10_000;
/** How long a connection may wait for its preamble before a newcomer may evict it. */
export const GRACE_MS = 500;
const LIMIT_CHECK_MS = 2_000;

/** The data port. `start()` once, `close()` to stop. Single-threaded. */
export class DataPort {
  #opts: DataPortOptions;
  #limits: DataPortLimits;
  #listener: Deno.TcpListener | undefined;
  /** Connections waiting for their preamble, counted until released: from strangers, from members. */
  #strangersHeld = 0;
  #membersHeld = 0;
  /** Live member control sessions per address. */
  #members = new Map<string, number>();
  /** Unticketed connections not yet evicted, with when they came: all, and per address (oldest first). */
  #pending = new Map<Deno.TcpConn, number>();
  #pendingByAddress = new Map<string, Set<Deno.TcpConn>>();
  #memberPendingByAddress = new Map<string, Set<Deno.TcpConn>>();
  #waiting = new Map<string, Waiting>();
  #splices = new Set<Splice>();
  /** Splices per caller certificate serial. */
  #callerSplices = new Map<string, number>();
  #accepted = 0;
  #refused = 0;
  #refusedLogged = 0;
  #closed = false;
  #total = 0;
  #totalCheckedAt = -Infinity;

  constructor(opts: DataPortOptions) {
    this.#opts = opts;
    this.#limits = { ...DEFAULT_DATA_LIMITS, ...opts.limits };
  }

  /** Binds the listener and starts accepting; returns the bound address. */
  start(): HostPort {
    const { listen } = this.#opts;
    const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
    this.#listener = listener;
    const addr = listener.addr as Deno.NetAddr;
    const bound = { hostname: addr.hostname, port: addr.port };
    this.#opts.log.info("data port listening", { addr: formatHostPort(bound) });
    this.#accept(listener);
    return bound;
  }

  /** Connections accepted since the start. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections refused since the start (bad, used or expired ticket, over a limit, too slow). */
  get refused(): number {
    return this.#refused;
  }

  /** Connections holding a descriptor without a valid ticket now. */
  get unticketed(): number {
    return this.#strangersHeld + this.#membersHeld;
  }

  /** A member's control session from `address` is live (its data connections come first). */
  memberOnline(address: string): void {
    const a = plainAddress(address);
    this.#members.set(a, (this.#members.get(a) ?? 0) + 1);
  }

  /** A member's control session from `address` ended. */
  memberOffline(address: string): void {
    const a = plainAddress(address);
    const left = (this.#members.get(a) ?? 1) - 1;
    if (left > 0) this.#members.set(a, left);
    else this.#members.delete(a);
  }

  /** Splices relaying now. */
  get splices(): number {
    return this.#splices.size;
  }

  /** A control session closed: legs waiting under its tickets and its splices end now. */
  sessionClosed(session: object): void {
    for (const [sid, w] of this.#waiting) if (w.grant.owner === session) this.#dropWaiting(sid);
    for (const s of [...this.#splices]) if (s.sessions.includes(session)) s.abort();
  }

  /** Ends every waiting leg and splice of a revoked certificate. */
  revoke(revoked: Set<string>): void {
    for (const [sid, w] of this.#waiting) if (revoked.has(w.grant.serial)) this.#dropWaiting(sid);
    for (const s of [...this.#splices]) if (s.serials.some((x) => revoked.has(x))) s.abort();
  }

  close(): void {
    this.#closed = true;
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const c of this.#pending.keys()) closeQuietly(c);
    for (const sid of [...this.#waiting.keys()]) this.#dropWaiting(sid);
    for (const s of [...this.#splices]) s.abort();
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    let backoff = 0;
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoff = 0;
      } catch (err) {
        if (this.#closed || err instanceof Deno.errors.BadResource) return;
        // Out of descriptors (EMFILE) and the like: wait instead of spinning, log once per burst.
        if (backoff === 0) this.#opts.log.warn("data port accept failed", { err: errText(err) });
        backoff = Math.min(1_000, backoff ? backoff * 2 : 50);
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      this.#accepted++;
      this.#admit(conn);
    }
  }

  async #admit(conn: Deno.TcpConn): Promise<void> {
    const address = plainAddress((conn.remoteAddr as Deno.NetAddr).hostname);
    const member = this.#members.has(address);
    const now = performance.now();
    const total = this.#totalCap();
    const byAddresses = member ? this.#memberPendingByAddress : this.#pendingByAddress;
    if ((member ? this.#membersHeld : this.#strangersHeld) >= total) {
      const mine = byAddresses.get(address)?.size ?? 0;
      const biggest = biggestHolder(byAddresses);
      const oldest: Deno.TcpConn | undefined = biggest?.values().next().value;
      if (!biggest || !oldest || biggest.size <= mine + 1) return this.#refuse(conn);
      if (now - (this.#pending.get(oldest) ?? now) < GRACE_MS) return this.#refuse(conn);
      this.#evict(oldest);
    }
    if (member) this.#membersHeld++;
    else this.#strangersHeld++;
    this.#pending.set(conn, now);
    let byAddress = byAddresses.get(address);
    if (!byAddress) byAddresses.set(address, byAddress = new Set());
    byAddress.add(conn);
    const timer = setTimeout(() => closeQuietly(conn), this.#limits.ticketMs);
    let ticket: string | undefined;
    try {
      ticket = parsePreamble(await readPreamble(conn));
    } catch {
      ticket = undefined; // closed by the deadline, reset, or ended early
    } finally {
      // The read has ended, so the socket is released once closed: only now does it stop counting.
      clearTimeout(timer);
      this.#forget(conn, address);
      if (member) this.#membersHeld--;
      else this.#strangersHeld--;
    }
    const grant = ticket ? this.#opts.tickets.claim(ticket) : undefined;
    if (!grant || this.#closed) {
      this.#refuse(conn);
      return;
    }
    conn.setNoDelay(true);
    this.#pair(conn, grant);
  }

  /** Closes a waiting connection to make room; it stops counting once its read has ended. */
  #evict(conn: Deno.TcpConn): void {
    this.#forget(conn, plainAddress((conn.remoteAddr as Deno.NetAddr).hostname));
    this.#refuse(conn);
  }

  #forget(conn: Deno.TcpConn, address: string): void {
    this.#pending.delete(conn);
    for (const byAddresses of [this.#pendingByAddress, this.#memberPendingByAddress]) {
      const set = byAddresses.get(address);
      if (!set?.delete(conn)) continue;
      if (set.size === 0) byAddresses.delete(address);
    }
  }

  /** `total`, held under a quarter of the descriptor limit (re-read every few seconds). */
  #totalCap(): number {
    const now = performance.now();
    if (now - this.#totalCheckedAt >= LIMIT_CHECK_MS) {
      this.#totalCheckedAt = now;
      const fds = readFdLimit();
      this.#total = fds ? Math.min(this.#limits.total, Math.floor(fds / 4)) : this.#limits.total;
    }
    return this.#total;
  }

  #pair(conn: Deno.TcpConn, grant: ClaimedTicket): void {
    const other = this.#waiting.get(grant.sid);
    if (!other) {
      const timer = setTimeout(() => this.#dropWaiting(grant.sid), this.#limits.pairWaitMs);
      this.#waiting.set(grant.sid, { conn, grant, timer });
      return;
    }
    if (other.grant.side === grant.side) {
      this.#refuse(conn); // tickets are per side: this cannot happen unless tickets leak
      return;
    }
    clearTimeout(other.timer);
    this.#waiting.delete(grant.sid);
    const caller = grant.side === "caller" ? grant : other.grant;
    if ((this.#callerSplices.get(caller.serial) ?? 0) >= this.#limits.splicesPerCaller) {
      this.#refuse(other.conn);
      this.#refuse(conn);
      return;
    }
    this.#splice(other, { conn, grant });
  }

  #splice(a: { conn: Deno.TcpConn; grant: ClaimedTicket }, b: typeof a): void {
    const legA = this.#counted(connLeg(a.conn));
    const legB = this.#counted(connLeg(b.conn));
    const s: Splice = {
      sessions: [a.grant.owner, b.grant.owner],
      serials: [a.grant.serial, b.grant.serial],
      abort: () => {
        legA.abort();
        legB.abort();
      },
    };
    this.#splices.add(s);
    const caller = a.grant.side === "caller" ? a.grant.serial : b.grant.serial;
    this.#callerSplices.set(caller, (this.#callerSplices.get(caller) ?? 0) + 1);
    const started = performance.now();
    splice(legA, legB).then((r) => {
      this.#splices.delete(s);
      const left = (this.#callerSplices.get(caller) ?? 1) - 1;
      if (left > 0) this.#callerSplices.set(caller, left);
      else this.#callerSplices.delete(caller);
      this.#opts.log.debug("pair closed", {
        bytes: r.ab + r.ba,
        ms: Math.round(performance.now() - started),
      });
    });
  }

  /** `leg`, telling `onRelayed` of each chunk read (one call per native read of up to 256 KiB). */
  #counted(leg: Leg): Leg {
    const onRelayed = this.#opts.onRelayed;
    if (!onRelayed) return leg;
    return {
      ...leg,
      read: async () => {
        const chunk = await leg.read();
        if (chunk) onRelayed(chunk.byteLength);
        return chunk;
      },
    };
  }

  #dropWaiting(sid: string): void {
    const w = this.#waiting.get(sid);
    if (!w) return;
    clearTimeout(w.timer);
    this.#waiting.delete(sid);
    closeQuietly(w.conn);
  }

  /** Closes a refused connection; one log line per interval says how many. */
  #refuse(conn: Deno.Conn): void {
    closeQuietly(conn);
    this.#refused++;
    const now = Date.now();
    if (now - this.#refusedLogged >= REFUSAL_LOG_MS) {
      this.#refusedLogged = now;
      this.#opts.log.info("data connections refused", { count: this.#refused });
    }
  }
}

/** The waiting connections of the address that holds the most. */
function biggestHolder(
  byAddresses: Map<string, Set<Deno.TcpConn>>,
): Set<Deno.TcpConn> | undefined {
  let biggest: Set<Deno.TcpConn> | undefined;
  for (const set of byAddresses.values()) {
    if (!biggest || set.size > biggest.size) biggest = set;
  }
  return biggest;
}

/** Reads exactly the preamble's length (never a byte more: TLS follows). */
async function readPreamble(conn: Deno.Conn): Promise<Uint8Array> {
  const buf = new Uint8Array(PREAMBLE_BYTES);
  let got = 0;
  while (got < buf.byteLength) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error("ended before its preamble");
    got += n;
  }
  return buf;
}

/** An IPv4 address without its IPv6-mapped prefix (node:net writes `::ffff:1.2.3.4`). */
function plainAddress(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
