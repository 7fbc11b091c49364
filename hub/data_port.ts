/**
 * The hub's native data port: a Deno TLS listener (the hub's own server
 * certificate, TLS 1.2+) where agents' warm data connections wait. A
 * connection's first line is `ZTM1 <ticket>`; a valid ticket attaches the
 * rest of the connection to one side of one tunnel, and anything else closes
 * it. Nothing here is plaintext, and nothing is relayed before a ticket.
 *
 * Deno's TLS listener cannot ask for client certificates, so the ticket is
 * the credential (see `tickets.ts`); to keep strangers from holding sockets,
 * a connection must present its ticket within the idle limit, and each
 * address may hold only so many connections without one.
 *
 * A connection counts (against its address and in all) from its accept until
 * its socket is really released, not when the hub decides to drop it: in
 * Deno 2.9.3 closing a server-side TLS connection whose handshake never
 * started does not release the socket, and the close also rejects the
 * handshake, the only sign the hub would get when the peer goes. So such a
 * connection is never closed by the hub: it keeps counting while its peer
 * holds it, and is closed (and released) when its handshake settles — the
 * peer finishing the handshake, failing it, or going away. A connection over
 * the per-address cap is the same, only that it is closed as soon as its
 * handshake settles, with no timer and no read buffer. The total cap leaves
 * descriptors for the control port: at most half of the descriptor limit (read
 * from `/proc/self/limits`, as `connection_gate.ts` does) less its reserve; at
 * that cap the hub stops accepting (the kernel's backlog holds the rest), and
 * the per-address cap is at most an eighth of it. Accept errors back off, and
 * refusals are logged once per interval with a count (`LogThrottle`).
 */
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import type { ClaimedTicket, Tickets } from "./tickets.ts";
import { readFdLimit } from "./connection_gate.ts";
import { LogThrottle } from "./log_throttle.ts";

/** The line prefix a data connection starts with. */
export const DATA_HELLO = "ZTM1 ";
const MAX_HELLO_BYTES = 128;

/** Limits of the data port. */
export interface DataPortLimits {
  /** How long a connection may wait for its ticket (agents keep warm connections below this). */
  idleMs: number;
  /** Connections without a ticket yet, per remote address (at most an eighth of the total cap). */
  perAddress: number;
  /** Connections without a ticket yet, in all (at most what the descriptor limit allows). */
  total: number;
}

/**
 * Defaults for `DataPortLimits`. An agent keeps up to 8 warm connections and
 * dials up to 16 more in a burst, all waiting here, and one refused here dies
 * unseen in its pool, failing the tunnel that takes it. So the per-address
 * limit must fit every agent behind one NAT: with 64, two busy agents on one
 * address already lost tunnels (`deno task soak`); 1,024 fits ~40. Both
 * are lowered to what the descriptor limit allows (see the module comment):
 * 1,024 per address needs a limit of about 20,000.
 */
export const DEFAULT_DATA_LIMITS: DataPortLimits = {
  idleMs: 30_000,
  perAddress: 1_024,
  total: 20_000,
};

/** What the data port needs. */
export interface DataPortOptions {
  listen: HostPort;
  certPem: string;
  keyPem: string;
  tickets: Tickets;
  log: Logger;
  /** Called with each connection whose ticket was valid; it owns the connection from then on. */
  onAttach: (grant: ClaimedTicket, conn: Deno.TlsConn, rest: Uint8Array) => void;
  limits?: Partial<DataPortLimits>;
  /** The process's descriptor limit; default: read from `/proc/self/limits`. */
  fdLimit?: () => number | undefined;
}

/** Longest pause after failed accepts (they back off from 10 ms, doubling). */
const MAX_ACCEPT_BACKOFF_MS = 1_000;
/** How often a full port looks again at the descriptor limit (an operator may raise it). */
const FULL_RECHECK_MS = 1_000;

/** The data port. `start()` once, `close()` to stop. */
export class DataPort {
  #opts: DataPortOptions;
  #limits: DataPortLimits;
  #quiet: LogThrottle;
  #listener: Deno.TlsListener | undefined;
  #closed = false;
  #waiting = new Map<string, number>();
  #waitingTotal = 0;
  #accepted = 0;
  #idle = new Set<Deno.TlsConn>();
  #fdLimit: number | undefined;
  #fdLimitReadAt = 0;
  /** Wakes an accept loop paused at the total cap. */
  #wake: (() => void) | undefined;
  /** Connections refused by a cap since the start. */
  refused = 0;

  constructor(opts: DataPortOptions) {
    this.#opts = opts;
    this.#limits = { ...DEFAULT_DATA_LIMITS, ...opts.limits };
    this.#quiet = new LogThrottle(opts.log);
  }

  /** Binds the listener and starts accepting; returns the bound address. */
  start(): HostPort {
    const { listen, certPem, keyPem } = this.#opts;
    const listener = Deno.listenTls({
      hostname: listen.hostname,
      port: listen.port,
      cert: certPem,
      key: keyPem,
    });
    this.#listener = listener;
    const addr = listener.addr as Deno.NetAddr;
    const bound = { hostname: addr.hostname, port: addr.port };
    this.#opts.log.info("data port listening", { addr: formatHostPort(bound) });
    this.#accept(listener);
    return bound;
  }

  /** Connections counted now: waiting for a ticket, or not yet released (for status). */
  get waiting(): number {
    return this.#waitingTotal;
  }

  /** Connections accepted since the start (for status: data links keep this low). */
  get accepted(): number {
    return this.#accepted;
  }

  /**
   * Serves a renewed certificate: the listener is bound again on the same address with it;
   * connections open now keep theirs (`enrollment.ts`, hub certificate renewal).
   */
  async setIdentity(certPem: string, keyPem: string): Promise<void> {
    if (this.#closed || !this.#listener) return;
    const addr = this.#listener.addr as Deno.NetAddr;
    this.#opts = {
      ...this.#opts,
      certPem,
      keyPem,
      listen: { hostname: addr.hostname, port: addr.port },
    };
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    // The closed listener's port is released once its pending accept ends: try for 2 s.
    for (let i = 0;; i++) {
      try {
        this.start();
        return;
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse) || i >= 40 || this.#closed) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  close(): void {
    this.#closed = true;
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const c of this.#idle) closeQuietly(c);
    this.#idle.clear();
    this.#wake?.();
  }

  /** The caps now: the configured ones, lowered to what the descriptor limit allows. */
  caps(): { total: number; perAddress: number } {
    const now = Date.now();
    if (now - this.#fdLimitReadAt >= FULL_RECHECK_MS) {
      this.#fdLimitReadAt = now;
      this.#fdLimit = (this.#opts.fdLimit ?? readFdLimit)() ?? this.#fdLimit;
    }
    let total = this.#limits.total;
    if (this.#fdLimit !== undefined) {
      const reserve = Math.max(128, Math.floor(this.#fdLimit / 8));
      total = Math.min(total, Math.max(8, Math.floor((this.#fdLimit - reserve) / 2)));
    }
    return { total, perAddress: Math.min(this.#limits.perAddress, Math.max(1, total >> 3)) };
  }

  async #accept(listener: Deno.TlsListener): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      if (this.#waitingTotal >= this.caps().total) {
        // Full: leave new connections in the kernel's backlog until one is released.
        this.refused++;
        this.#quiet.warn("data connections paused: too many", { code: "descriptors" });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            this.#wake = undefined;
            resolve();
          }, FULL_RECHECK_MS);
          this.#wake = () => {
            clearTimeout(timer);
            this.#wake = undefined;
            resolve();
          };
        });
        continue;
      }
      let conn: Deno.TlsConn;
      try {
        conn = await listener.accept();
        backoff = 0;
      } catch (err) {
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
          return;
        }
        // EMFILE and the like: wait before trying again, never spin.
        this.#quiet.warn("data port accept failed", { err: errText(err) });
        backoff = Math.min(MAX_ACCEPT_BACKOFF_MS, Math.max(10, backoff * 2));
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      this.#accepted++;
      this.#handle(conn);
    }
  }

  async #handle(conn: Deno.TlsConn): Promise<void> {
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    const count = this.#waiting.get(address) ?? 0;
    // Counted whether refused or not: either holds a descriptor until released.
    this.#waiting.set(address, count + 1);
    this.#waitingTotal++;
    const refused = count >= this.caps().perAddress;
    if (refused) {
      this.refused++;
      this.#quiet.warn("data connection refused: too many waiting", {
        peer: address,
        code: "per_address",
      });
    } else {
      this.#idle.add(conn);
    }
    let shaken = false;
    let expired = false;
    // At the idle limit a connection past its handshake is closed; one whose
    // handshake never started cannot be released by the hub (module comment).
    const timer = refused ? undefined : setTimeout(() => {
      expired = true;
      if (shaken) closeQuietly(conn);
    }, this.#limits.idleMs);
    let grant: ClaimedTicket | undefined;
    let rest: Uint8Array = new Uint8Array();
    try {
      await conn.handshake();
      shaken = true;
      if (!refused && !expired) {
        const hello = await readHello(conn);
        if (hello) {
          grant = this.#opts.tickets.claim(hello.ticket);
          rest = hello.rest;
        }
      }
    } catch {
      // handshake failed or peer gone, closed at the idle limit: nothing to tell
    } finally {
      clearTimeout(timer);
      this.#idle.delete(conn);
    }
    if (!grant) closeQuietly(conn);
    // Released now (closed after its handshake settled), or owned by its tunnel.
    const left = (this.#waiting.get(address) ?? 1) - 1;
    if (left > 0) this.#waiting.set(address, left);
    else this.#waiting.delete(address);
    this.#waitingTotal--;
    this.#wake?.();
    if (grant) this.#opts.onAttach(grant, conn, rest);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Reads `ZTM1 <ticket>\n`; returns the ticket and any bytes after the line, or undefined on garbage. */
async function readHello(
  conn: Deno.Conn,
): Promise<{ ticket: string; rest: Uint8Array } | undefined> {
  // Small: nothing sizeable is allocated before a valid ticket (bytes after the line stay unread).
  const buf = new Uint8Array(MAX_HELLO_BYTES + 1);
  let got = 0;
  while (got < buf.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return undefined;
    got += n;
    const nl = buf.subarray(0, got).indexOf(10);
    if (nl >= 0) {
      if (nl > MAX_HELLO_BYTES) return undefined;
      const line = new TextDecoder().decode(buf.subarray(0, nl));
      if (!line.startsWith(DATA_HELLO)) return undefined;
      return { ticket: line.slice(DATA_HELLO.length), rest: buf.slice(nl + 1, got) };
    }
  }
  return undefined;
}
