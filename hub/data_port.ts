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
 */
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import type { ClaimedTicket, Tickets } from "./tickets.ts";

/** The line prefix a data connection starts with. */
export const DATA_HELLO = "ZTM1 ";
const MAX_HELLO_BYTES = 128;

/** Limits of the data port. */
export interface DataPortLimits {
  /** How long a connection may wait for its ticket (agents keep warm connections below this). */
  idleMs: number;
  /** Connections without a ticket yet, per remote address. */
  perAddress: number;
  /** Connections without a ticket yet, in all. */
  total: number;
}

/**
 * Defaults for `DataPortLimits`. An agent keeps up to 8 warm connections and
 * dials up to 16 more in a burst, all waiting here, and one refused here dies
 * unseen in its pool, failing the tunnel that takes it. So the per-address
 * limit must fit every agent behind one NAT: with 64, two busy agents on one
 * address already lost tunnels (`deno task soak`); 1,024 fits ~40.
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
}

/** The data port. `start()` once, `close()` to stop. */
export class DataPort {
  #opts: DataPortOptions;
  #limits: DataPortLimits;
  #listener: Deno.TlsListener | undefined;
  #waiting = new Map<string, number>();
  #waitingTotal = 0;
  #accepted = 0;
  #idle = new Set<Deno.TlsConn>();

  constructor(opts: DataPortOptions) {
    this.#opts = opts;
    this.#limits = { ...DEFAULT_DATA_LIMITS, ...opts.limits };
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

  /** Connections waiting for a ticket (for status). */
  get waiting(): number {
    return this.#waitingTotal;
  }

  /** Connections accepted since the start (for status: data links keep this low). */
  get accepted(): number {
    return this.#accepted;
  }

  close(): void {
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const c of this.#idle) c.close();
    this.#idle.clear();
  }

  async #accept(listener: Deno.TlsListener): Promise<void> {
    while (true) {
      let conn: Deno.TlsConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
          return;
        }
        this.#opts.log.warn("data port accept failed", { err: errText(err) });
        continue;
      }
      this.#accepted++;
      this.#handle(conn);
    }
  }

  async #handle(conn: Deno.TlsConn): Promise<void> {
    const address = (conn.remoteAddr as Deno.NetAddr).hostname;
    const count = this.#waiting.get(address) ?? 0;
    if (count >= this.#limits.perAddress || this.#waitingTotal >= this.#limits.total) {
      this.#opts.log.warn("data connection refused: too many waiting", { peer: address });
      conn.close();
      return;
    }
    this.#waiting.set(address, count + 1);
    this.#waitingTotal++;
    this.#idle.add(conn);
    const timer = setTimeout(() => conn.close(), this.#limits.idleMs);
    let grant: ClaimedTicket | undefined;
    let rest: Uint8Array = new Uint8Array();
    try {
      const hello = await readHello(conn);
      if (hello) {
        grant = this.#opts.tickets.claim(hello.ticket);
        rest = hello.rest;
      }
    } catch {
      // closed while waiting (idle limit, agent gone, handshake failed): nothing to tell
    } finally {
      clearTimeout(timer);
      this.#idle.delete(conn);
      const left = (this.#waiting.get(address) ?? 1) - 1;
      if (left > 0) this.#waiting.set(address, left);
      else this.#waiting.delete(address);
      this.#waitingTotal--;
    }
    if (!grant) {
      try {
        conn.close();
      } catch { /* already closed */ }
      return;
    }
    this.#opts.onAttach(grant, conn, rest);
  }
}

/** Reads `ZTM1 <ticket>\n`; returns the ticket and any bytes after the line, or undefined on garbage. */
async function readHello(
  conn: Deno.Conn,
): Promise<{ ticket: string; rest: Uint8Array } | undefined> {
  const buf = new Uint8Array(MAX_HELLO_BYTES + 64 * 1024);
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
    if (got > MAX_HELLO_BYTES) return undefined;
  }
  return undefined;
}
