/**
 * Log lines that a stranger or a hostile member could make the hub write at
 * will (refused handshakes, refused sessions, limits hit) go through a
 * `LogThrottle`: the first line of each kind is written, later ones within
 * the interval are only counted, and the next line written carries that
 * count in `count`. A kind is the event phrase plus the error text, so
 * different reasons are each logged.
 *
 * @example
 * ```ts
 * const quiet = new LogThrottle(log);
 * quiet.warn("handshake refused", { peer, err: errText(err) });
 * ```
 */
import type { LogFields, Logger } from "@ztm/shared/log";

/** How long one kind of line stays quiet after it is written. */
export const LOG_THROTTLE_MS = 5_000;
/** Kinds remembered at once; beyond that the memory is cleared (and some lines come twice). */
const MAX_KINDS = 1_000;

/** Rate-limited warnings and infos. Single-threaded; no timers. */
export class LogThrottle {
  #log: Logger;
  #intervalMs: number;
  #kinds = new Map<string, { until: number; suppressed: number }>();

  constructor(log: Logger, intervalMs = LOG_THROTTLE_MS) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** Writes `msg` at warn level unless a line of its kind was written within the interval. */
  warn(msg: string, fields: LogFields = {}): void {
    if (this.#pass(msg, fields)) this.#log.warn(msg, fields);
  }

  /** Writes `msg` at info level unless a line of its kind was written within the interval. */
  info(msg: string, fields: LogFields = {}): void {
    if (this.#pass(msg, fields)) this.#log.info(msg, fields);
  }

  #pass(msg: string, fields: LogFields): boolean {
    const kind = `${msg}\u0000${fields.err ?? ""}\u0000${fields.code ?? ""}`;
    const now = Date.now();
    const seen = this.#kinds.get(kind);
    if (seen && now < seen.until) {
      seen.suppressed++;
      return false;
    }
    if (seen?.suppressed) fields.count = seen.suppressed;
    if (!seen && this.#kinds.size >= MAX_KINDS) this.#kinds.clear();
    this.#kinds.set(kind, { until: now + this.#intervalMs, suppressed: 0 });
    return true;
  }
}
