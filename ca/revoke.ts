/**
 * Revocation: marks a user's certificate revoked, wakes long-polling hubs,
 * and keeps a signed CRL that covers every revocation of a certificate not
 * yet expired (expired ones leave it: their expiry already refuses them).
 *
 * The feed (`since`/`wait`) only tells hubs *that* something changed; hubs
 * then fetch the signed CRL and verify it, so a tampered feed can delay but
 * never forge or hide a revocation.
 */
import { createCrl, encodeCrlEntries, type Serial } from "@ztm/shared/certs";
import type { Logger } from "@ztm/shared/log";
import type { SigningKey } from "./signing_key.ts";
import type { CaStore, CertificateRecord, CrlRow, Revocation } from "./store.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
/** A CRL is valid this long; it is re-signed when half of that has passed. */
const CRL_LIFETIME_MS = 7 * DAY_MS;

/** Options for `Revoker`. */
export interface RevokerOptions {
  store: CaStore;
  signingKey: SigningKey;
  log: Logger;
}

/** Revokes certificates and serves the feed and CRL. Methods may be called concurrently. */
export class Revoker {
  #opts: RevokerOptions;
  #waiters = new Set<() => void>();
  #signing: Promise<string> | undefined;
  /**
   * The CRL's entries as of revocation `seq`, kept between signings: a new
   * revocation reads only the rows after `seq` rather than all 100,000.
   */
  #entries: { seq: number; rows: CrlRow[]; der: Uint8Array<ArrayBuffer> } | undefined;

  constructor(opts: RevokerOptions) {
    this.#opts = opts;
  }

  /** Revokes the live certificate of user `name`. Throws `NotFound` if there is none. */
  revoke(name: string, reason = "revoked by administrator"): CertificateRecord {
    return this.#announce(this.#opts.store.revokeUser(name, reason));
  }

  /**
   * Revokes every unexpired certificate of user `name`: the legacy one and each device's.
   * Throws `NotFound` if there is none.
   */
  revokeUserEverywhere(name: string, reason = "revoked by administrator"): CertificateRecord[] {
    return this.#announceAll(this.#opts.store.revokeAllOfUser(name, reason));
  }

  /** Revokes the certificates of one device of `name`; the user's other devices keep theirs. */
  revokeDevice(
    name: string,
    endpoint: string,
    reason = "revoked by administrator",
  ): CertificateRecord[] {
    return this.#announceAll(this.#opts.store.revokeDevice(name, endpoint, reason));
  }

  /** Revokes the user certificate with `serial` (and the rest of its device's). */
  revokeSerial(serial: string, reason = "revoked by administrator"): CertificateRecord[] {
    return this.#announceAll(this.#opts.store.revokeUserSerial(serial, reason));
  }

  #announceAll(records: CertificateRecord[]): CertificateRecord[] {
    for (const r of records) this.#announce(r);
    return records;
  }

  /** Revokes the live hub certificate with `serial`. Throws `NotFound` if there is none. */
  revokeHub(serial: string, reason = "revoked by administrator"): CertificateRecord {
    return this.#announce(this.#opts.store.revokeHub(serial, reason));
  }

  #announce(record: CertificateRecord): CertificateRecord {
    this.#opts.log.info(record.role === "hub" ? "hub certificate revoked" : "certificate revoked", {
      user: record.name,
      serial: record.serial,
    });
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
    return record;
  }

  /** Revocations after `since`; with `waitMs`, waits up to that long for one to arrive. */
  async revocationsSince(since: number, waitMs = 0, signal?: AbortSignal): Promise<Revocation[]> {
    const now = this.#opts.store.revocationsSince(since);
    if (now.length || waitMs <= 0) return now;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.#waiters.add(done);
      signal?.addEventListener("abort", done);
    });
    return this.#opts.store.revocationsSince(since);
  }

  /** The current sequence number of the feed. */
  lastSeq(): number {
    return this.#opts.store.lastRevocationSeq();
  }

  /** A signed CRL (PEM) covering every revocation, re-signed when stale. */
  async crlPem(): Promise<string> {
    const { store } = this.#opts;
    while (true) {
      const stored = store.crl();
      const seq = store.lastRevocationSeq();
      const fresh = stored && stored.revocationSeq === seq &&
        Date.parse(stored.nextUpdate) - Date.now() > CRL_LIFETIME_MS / 2;
      if (fresh) return stored.pem;
      // One signing at a time; concurrent callers share it. A signing that began before
      // the latest revocation does not cover it, so look again once it is done.
      this.#signing ??= this.#sign(stored?.number ?? 0).finally(() => (this.#signing = undefined));
      await this.#signing;
    }
  }

  async #sign(lastNumber: number): Promise<string> {
    const { store, signingKey, log } = this.#opts;
    const started = performance.now();
    const seq = store.lastRevocationSeq();
    const thisUpdate = new Date();
    const now = thisUpdate.toISOString();
    const known = this.#entries;
    const added = store.crlEntries(now, known?.seq ?? 0);
    const encode = (rows: CrlRow[]) =>
      encodeCrlEntries(
        rows.map((r) => ({ serial: r.serial as Serial, revokedAt: new Date(r.revokedAt) })),
      );
    let rows: CrlRow[];
    let der: Uint8Array<ArrayBuffer>;
    if (known && known.rows.every((r) => r.notAfter > now)) {
      // Only new revocations: append their entries to those already encoded.
      rows = [...known.rows, ...added];
      const tail = encode(added);
      der = new Uint8Array(known.der.length + tail.length);
      der.set(known.der);
      der.set(tail, known.der.length);
    } else {
      // First signing, or entries of expired certificates leave: encode them all.
      rows = [...(known?.rows.filter((r) => r.notAfter > now) ?? []), ...added];
      der = encode(rows);
    }
    this.#entries = { seq: added.at(-1)?.seq ?? known?.seq ?? 0, rows, der };
    const nextUpdate = new Date(thisUpdate.getTime() + CRL_LIFETIME_MS);
    const number = lastNumber + 1;
    const pem = await createCrl(
      signingKey,
      der,
      { number, thisUpdate, nextUpdate },
    );
    store.saveCrl({ number, revocationSeq: seq, nextUpdate: nextUpdate.toISOString(), pem });
    log.info("crl signed", { count: rows.length, ms: Math.round(performance.now() - started) });
    return pem;
  }

  /** Wakes every long poll so the server can shut down. */
  close(): void {
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }
}
