/**
 * Logs what a peer sent that was refused, without letting the peer flood the
 * log: the first refusal of each kind gets a line, and then only the 10th,
 * 100th, 1,000th… of that kind (with the running `count`). Kinds are stable
 * codes chosen by the caller, never text the peer wrote; past
 * `MAX_REFUSAL_KINDS` distinct kinds, the rest are counted as `other`.
 *
 * @example
 * ```ts
 * const refusals = new RefusalLog(log, "bad message from hub", { mesh: "home" });
 * refusals.refused("bad_message", errText(err));
 * ```
 */
import type { LogFields, Logger } from "./log.ts";

/** Distinct kinds counted one by one. */
export const MAX_REFUSAL_KINDS = 64;

/** Refusals of one source (a hub link, a caller). Single-threaded; never throws. */
export class RefusalLog {
  #log: Logger;
  #msg: string;
  #fields: LogFields;
  #counts = new Map<string, number>();
  #total = 0;

  constructor(log: Logger, msg: string, fields: LogFields = {}) {
    this.#log = log;
    this.#msg = msg;
    this.#fields = fields;
  }

  /** Counts one refusal of `kind`; logs it when it is the 1st, 10th, 100th… of its kind. */
  refused(kind: string, err: string, fields: LogFields = {}): void {
    this.#total++;
    const key = this.#counts.has(kind) || this.#counts.size < MAX_REFUSAL_KINDS ? kind : "other";
    const count = (this.#counts.get(key) ?? 0) + 1;
    this.#counts.set(key, count);
    if (!isPowerOfTen(count)) return;
    this.#log.warn(this.#msg, { ...this.#fields, ...fields, code: key, count, err });
  }

  /** Refusals counted so far, of every kind. */
  get total(): number {
    return this.#total;
  }

  /** Counts by kind. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }
}

function isPowerOfTen(n: number): boolean {
  while (n >= 10 && n % 10 === 0) n /= 10;
  return n === 1;
}
