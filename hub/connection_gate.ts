/**
 * The control port's door: how many connections one remote address may
 * hold before the hub admits them as members, and how many the port holds
 * in all, so that strangers can neither starve members of descriptors nor
 * make the listener hit EMFILE.
 *
 * A connection counts from the moment it is accepted until its socket is
 * really released (the raw socket's `close`), not when the hub decides to
 * drop it; it stops counting against its address once its session is
 * admitted (members behind one NAT are limited per user, not per address).
 * The total cap is the process's descriptor limit (read from
 * `/proc/self/limits`, again at most once a second, as an operator may raise
 * it with `prlimit` while the hub runs) less a reserve for everything else
 * (an eighth of it, at least 128: the data port, the CA, files).
 *
 * Why a cap rather than a back-off: in Deno 2.9.3 an accept error in
 * `node:net` (EMFILE) closes the listening socket for good while
 * `server.listening` stays true, so the hub must never let accept fail. A
 * connection over a cap is still accepted (that takes one descriptor for a
 * moment) and destroyed at once.
 */
import type { Socket } from "node:net";
import type { LogThrottle } from "./log_throttle.ts";

/** Options of {@link ConnectionGate}. */
export interface ConnectionGateOptions {
  /** Connections one address may hold before admission. */
  perAddress: number;
  quiet: LogThrottle;
  /** Told of each connection a cap refused, with which cap (for `ztm_hub_admission_refusals_total`). */
  onRefused?: (reason: "per_address" | "descriptors") => void;
  /** The process's descriptor limit; default: read from `/proc/self/limits`. */
  fdLimit?: () => number | undefined;
}

/** Counts control connections; see the module comment. Single-threaded. */
export class ConnectionGate {
  #opts: ConnectionGateOptions;
  #pending = new Map<string, number>();
  /** Sockets not yet admitted, by `address:port`, with their address. */
  #waiting = new Map<string, string>();
  #total = 0;
  #limit: number | undefined;
  #limitReadAt = 0;
  /** Connections refused by a cap since the start. */
  refused = 0;

  constructor(opts: ConnectionGateOptions) {
    this.#opts = opts;
  }

  /** Connections held now. */
  get total(): number {
    return this.#total;
  }

  /** Counts a newly accepted socket, or destroys it if a cap is reached. */
  open(socket: Socket): void {
    const address = socket.remoteAddress ?? "?";
    const pending = this.#pending.get(address) ?? 0;
    const cap = this.#totalCap();
    if (pending >= this.#opts.perAddress || this.#total >= cap) {
      this.refused++;
      const reason = pending >= this.#opts.perAddress ? "per_address" : "descriptors";
      this.#opts.onRefused?.(reason);
      this.#opts.quiet.warn("connection refused: too many", { peer: address, code: reason });
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    const key = `${address}:${socket.remotePort}`;
    this.#total++;
    this.#pending.set(address, pending + 1);
    this.#waiting.set(key, address);
    socket.once("close", () => {
      this.#total--;
      this.#release(key);
    });
  }

  /** The connection from `address:port` became an admitted session: it no longer counts per address. */
  admitted(address: string | undefined, port: number | undefined): void {
    this.#release(`${address}:${port}`);
  }

  #release(key: string): void {
    const address = this.#waiting.get(key);
    if (address === undefined) return;
    this.#waiting.delete(key);
    const left = (this.#pending.get(address) ?? 1) - 1;
    if (left > 0) this.#pending.set(address, left);
    else this.#pending.delete(address);
  }

  #totalCap(): number {
    const now = Date.now();
    if (now - this.#limitReadAt >= 1_000) {
      this.#limitReadAt = now;
      this.#limit = (this.#opts.fdLimit ?? readFdLimit)() ?? this.#limit;
    }
    if (this.#limit === undefined) return Infinity;
    return Math.max(1, this.#limit - Math.max(128, Math.floor(this.#limit / 8)));
  }
}

/** The soft "Max open files" of this process, or undefined where `/proc` cannot tell. */
export function readFdLimit(): number | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\d+)/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
