/**
 * Follows the CA's revocations: long-polls the feed, fetches the signed CRL
 * when it moves, verifies it against the mesh CA, keeps it on disk (`0600`)
 * and tells the hub which serials to cut off.
 *
 * While the CA is unreachable the last verified CRL stays in force; the
 * state shows in `status()` and in one log line per change. A CRL that does
 * not verify, or carries a lower number than the one held (a rollback), is
 * an alarm, never a silent fallback: `status().alarm` says why, and the hub
 * logs it at error level; the last verified CRL stays in force meanwhile.
 */
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import { errText, type Logger } from "@ztm/shared/log";
import { normalizeSerial, type VerifiedCrl, verifyCrl } from "@ztm/shared/crl";

/** Seconds each long poll waits at the CA. */
const POLL_WAIT_SECONDS = 25;

/** Options for `RevocationFollower`. */
export interface RevocationFollowerOptions {
  caUrl: string;
  caPem: string;
  /** Where the last verified CRL is kept. */
  crlFile: string;
  log: Logger;
  /**
   * Called with the full revoked set and the CRL's number after each new CRL,
   * and with just the newly revoked serials (no number) as soon as the feed
   * names them.
   */
  onUpdate: (revoked: Set<string>, crlNumber?: number) => void;
}

/** What `/api/status` shows about revocations. */
export interface RevocationStatus {
  caReachable: boolean;
  crlNumber: number | null;
  crlAgeSeconds: number | null;
  lastError: string | null;
  /** Why the last CRL from the CA (or the cached one) was refused; null while all is well. */
  alarm: string | null;
}

/** A CRL the CA served that the hub refuses: an alarm, not an outage. */
class CrlRefused extends Error {}

/** Keeps the hub's revocation list current. Call `start()` once, `close()` to stop. */
export class RevocationFollower {
  #opts: RevocationFollowerOptions;
  #crl: VerifiedCrl | undefined;
  #seq = 0;
  #reachable = false;
  #lastError: string | null = null;
  #alarm: string | null = null;
  /**
   * Serials the feed named that no verified CRL lists yet. The feed is not
   * signed, so it may only ever add refusals (cut a session early), never
   * lift one: at worst a forged feed cuts off a member, as blocking the CA
   * would. It makes revocation-to-close independent of the CRL's size.
   */
  #early = new Set<string>();
  #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(opts: RevocationFollowerOptions) {
    this.#opts = opts;
  }

  /** Loads the cached CRL (if it verifies) and starts following the CA. */
  async start(): Promise<void> {
    const cached = readTextIfExists(this.#opts.crlFile);
    if (cached) {
      try {
        this.#apply(await this.#verify(cached), false);
      } catch (err) {
        this.#raise(new CrlRefused(`cached CRL refused: ${errText(err)}`));
      }
    }
    // One fetch before admitting anyone, when the CA answers quickly.
    await this.#refresh().catch((err) => this.#failed(err));
    this.#loop = this.#follow();
  }

  /** True if `serial` is on the current CRL. */
  isRevoked(serial: string): boolean {
    const s = normalizeSerial(serial);
    return (this.#crl?.serials.has(s) ?? false) || this.#early.has(s);
  }

  /** The current verified CRL PEM, for agents. */
  crlPem(): string | undefined {
    return this.#crl?.pem;
  }

  /** The number of the current CRL, 0 when none. */
  crlNumber(): number {
    return this.#crl?.number ?? 0;
  }

  status(): RevocationStatus {
    return {
      caReachable: this.#reachable,
      crlNumber: this.#crl?.number ?? null,
      crlAgeSeconds: this.#crl
        ? Math.round((Date.now() - this.#crl.thisUpdate.getTime()) / 1000)
        : null,
      lastError: this.#lastError,
      alarm: this.#alarm,
    };
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loop?.catch(() => {});
  }

  async #follow(): Promise<void> {
    let delay = 500;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        const res = await fetch(
          `${this.#opts.caUrl}/api/revocations?since=${this.#seq}&wait=${POLL_WAIT_SECONDS}`,
          {
            signal: AbortSignal.any([signal, AbortSignal.timeout((POLL_WAIT_SECONDS + 10) * 1000)]),
          },
        );
        if (!res.ok) {
          await res.body?.cancel();
          throw new Error(`revocation feed answered ${res.status}`);
        }
        const feed = await res.json() as { seq: number; revocations: unknown[] };
        this.#earlyRevocations(feed.revocations);
        if (feed.seq !== this.#seq || feed.revocations.length || !this.#reachable) {
          await this.#refresh();
        }
        delay = 500;
      } catch (err) {
        if (signal.aborted) return;
        this.#failed(err);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }

  async #refresh(): Promise<void> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(10_000)]);
    const feedRes = await fetch(`${this.#opts.caUrl}/api/revocations?since=0&wait=0`, { signal });
    if (!feedRes.ok) throw new Error(`revocation feed answered ${feedRes.status}`);
    const seq = (await feedRes.json() as { seq: number }).seq;
    const res = await fetch(`${this.#opts.caUrl}/api/crl`, { signal });
    const pem = await res.text();
    if (!res.ok) throw new Error(`crl answered ${res.status}`);
    let crl: VerifiedCrl & { ms: number };
    try {
      crl = await this.#verify(pem);
    } catch (err) {
      throw new CrlRefused(`CRL from the CA refused: ${errText(err)}`);
    }
    if (!this.#reachable) {
      this.#reachable = true;
      this.#lastError = null;
      this.#opts.log.info("ca reachable");
    }
    this.#apply(crl, true);
    this.#seq = seq;
  }

  /** Cuts off the serials a feed answer names, before the CRL that lists them is verified. */
  #earlyRevocations(revocations: unknown[]): void {
    const fresh = new Set<string>();
    for (const r of Array.isArray(revocations) ? revocations : []) {
      const serial = (r as { serial?: unknown })?.serial;
      if (typeof serial !== "string" || !/^[0-9a-fA-F]{1,64}$/.test(serial)) continue;
      const s = normalizeSerial(serial);
      if (this.#crl?.serials.has(s) || this.#early.has(s)) continue;
      this.#early.add(s);
      fresh.add(s);
    }
    if (fresh.size) this.#opts.onUpdate(fresh);
  }

  async #verify(pem: string): Promise<VerifiedCrl & { ms: number }> {
    const started = performance.now();
    const crl = await verifyCrl(pem, this.#opts.caPem);
    return { ...crl, ms: Math.round(performance.now() - started) };
  }

  #apply(crl: VerifiedCrl & { ms: number }, save: boolean): void {
    const held = this.#crl;
    if (held && crl.number < held.number) {
      throw new CrlRefused(`CA served CRL number ${crl.number}, older than ${held.number} held`);
    }
    this.#alarm = null;
    if (held && crl.pem === held.pem) return;
    this.#crl = crl;
    for (const s of this.#early) if (crl.serials.has(s)) this.#early.delete(s);
    if (save) writeSecretFile(this.#opts.crlFile, crl.pem);
    this.#opts.log.info("crl applied", { count: crl.serials.size, ms: crl.ms, crl: crl.number });
    this.#opts.onUpdate(crl.serials, crl.number);
  }

  #failed(err: unknown): void {
    if (err instanceof CrlRefused) this.#raise(err);
    else this.#unreachable(err);
  }

  #raise(err: CrlRefused): void {
    if (this.#alarm !== err.message) this.#opts.log.error("crl refused", { err: err.message });
    this.#alarm = err.message;
  }

  #unreachable(err: unknown): void {
    const msg = errText(err);
    if (this.#reachable || this.#lastError === null) {
      this.#opts.log.warn("ca unreachable; keeping the last crl", { err: msg });
    }
    this.#reachable = false;
    this.#lastError = msg;
  }
}
