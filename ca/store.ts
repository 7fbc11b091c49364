/**
 * The CA's durable state in one SQLite file (`node:sqlite`, WAL,
 * `synchronous=FULL`): the CA key and certificate, every issued certificate,
 * revocations in sequence order, and the last signed CRL.
 *
 * The file and its `-wal`/`-shm` companions are `0600` (SQLite gives the
 * companions the main file's mode). User private keys are never stored. The
 * store is synchronous; callers in one process may interleave freely because
 * every write is a single transaction.
 */
import { caError } from "./errors.ts";
import type { DatabaseSync } from "node:sqlite";
import { openDatabase, transaction } from "@ztm/shared/sqlite";

/** Migrations: `MIGRATIONS[v]` takes schema `v` to `v + 1`. */
const MIGRATIONS: string[] = [
  // 0 → 1
  `CREATE TABLE ca (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     private_key BLOB NOT NULL,
     certificate TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE certificates (
     serial TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     name_key TEXT NOT NULL,
     role TEXT NOT NULL CHECK (role IN ('user', 'hub')),
     certificate TEXT NOT NULL,
     fingerprint TEXT NOT NULL,
     not_before TEXT NOT NULL,
     not_after TEXT NOT NULL,
     issued_at TEXT NOT NULL,
     revoked_at TEXT,
     revocation_reason TEXT,
     revocation_seq INTEGER UNIQUE
   );
   CREATE UNIQUE INDEX one_live_certificate_per_user
     ON certificates (name_key) WHERE role = 'user' AND revoked_at IS NULL;
   CREATE INDEX certificates_by_revocation ON certificates (revocation_seq)
     WHERE revocation_seq IS NOT NULL;
   CREATE TABLE crl (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     number INTEGER NOT NULL,
     revocation_seq INTEGER NOT NULL,
     next_update TEXT NOT NULL,
     pem TEXT NOT NULL
   );`,
  // 1 → 2: a certificate per device. Certificates issued for an endpoint carry its name;
  // legacy ones (the walkthrough's, one per user) have endpoint_key ''. A renewal supersedes
  // the certificate it replaces (same user, endpoint and key) without revoking it.
  `ALTER TABLE certificates ADD COLUMN endpoint TEXT;
   ALTER TABLE certificates ADD COLUMN endpoint_key TEXT NOT NULL DEFAULT '';
   ALTER TABLE certificates ADD COLUMN superseded_at TEXT;
   ALTER TABLE certificates ADD COLUMN renewed_from TEXT;
   DROP INDEX one_live_certificate_per_user;
   CREATE UNIQUE INDEX one_live_certificate_per_device
     ON certificates (name_key, endpoint_key)
     WHERE role = 'user' AND revoked_at IS NULL AND superseded_at IS NULL;`,
  // 2 → 3: invites (the secret is kept only as an HMAC key derived from it), and the hubs'
  // addresses as they announce them (what an invite carries by default).
  `CREATE TABLE invites (
     id TEXT PRIMARY KEY,
     user TEXT NOT NULL,
     proof_key BLOB NOT NULL,
     created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL,
     uses_left INTEGER NOT NULL,
     uses INTEGER NOT NULL DEFAULT 0,
     revoked_at TEXT,
     hubs TEXT NOT NULL
   );
   CREATE TABLE hubs (
     serial TEXT PRIMARY KEY,
     control TEXT NOT NULL,
     enroll TEXT NOT NULL,
     seen_at TEXT NOT NULL
   );`,
];

/** Who a certificate was issued to. */
export type CertificateKind = "user" | "hub";

/** One issued certificate as stored. */
export interface CertificateRecord {
  serial: string;
  name: string;
  role: CertificateKind;
  certificate: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  revokedAt: string | null;
  revocationReason: string | null;
  revocationSeq: number | null;
  /** The endpoint a device certificate was issued for; null for a user's legacy certificate. */
  endpoint?: string | null;
  /** When a renewal replaced it (it stays valid until its notAfter, and is not on the CRL). */
  supersededAt?: string | null;
  /** The serial of the certificate this one renewed. */
  renewedFrom?: string | null;
}

/** One entry of the revocation feed. */
export interface Revocation {
  seq: number;
  serial: string;
  name: string;
  revokedAt: string;
  reason: string;
}

/** One revoked certificate as the CRL lists it. */
export interface CrlRow {
  seq: number;
  serial: string;
  revokedAt: string;
  /** ISO time; the entry leaves the CRL after it. */
  notAfter: string;
}

/** The last signed CRL. */
export interface StoredCrl {
  number: number;
  revocationSeq: number;
  nextUpdate: string;
  pem: string;
}

type Row = Record<string, unknown>;

function toRecord(row: Row): CertificateRecord {
  return {
    serial: row.serial as string,
    name: row.name as string,
    role: row.role as CertificateKind,
    certificate: row.certificate as string,
    fingerprint: row.fingerprint as string,
    notBefore: row.not_before as string,
    notAfter: row.not_after as string,
    issuedAt: row.issued_at as string,
    revokedAt: (row.revoked_at as string | null) ?? null,
    revocationReason: (row.revocation_reason as string | null) ?? null,
    revocationSeq: (row.revocation_seq as number | null) ?? null,
    endpoint: (row.endpoint as string | null) ?? null,
    supersededAt: (row.superseded_at as string | null) ?? null,
    renewedFrom: (row.renewed_from as string | null) ?? null,
  };
}

/** The CA database. Not safe to share across processes; one CA owns one file. */
export class CaStore {
  #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating `0600` if missing) and migrates the database at `path`.
   * Throws if `path` is not a regular file, before changing its mode.
   */
  static open(path: string): CaStore {
    return new CaStore(openDatabase(path, MIGRATIONS));
  }

  #transaction<T>(fn: () => T): T {
    return transaction(this.#db, fn);
  }

  /** The CA key (PKCS#8 DER) and certificate PEM, if made yet. */
  ca(): { privateKey: Uint8Array; certificate: string } | undefined {
    const row = this.#db.prepare("SELECT private_key, certificate FROM ca WHERE id = 1").get() as
      | Row
      | undefined;
    if (!row) return undefined;
    return { privateKey: row.private_key as Uint8Array, certificate: row.certificate as string };
  }

  /** Saves the CA key and certificate once; a second call keeps the first. */
  saveCa(privateKey: Uint8Array, certificate: string): void {
    this.#db.prepare(
      "INSERT OR IGNORE INTO ca (id, private_key, certificate, created_at) VALUES (1, ?, ?, ?)",
    ).run(privateKey, certificate, new Date().toISOString());
  }

  /**
   * Records an issued certificate. Throws `Conflict` when `name` already has a
   * live user certificate (the unique index decides, so concurrent issues of
   * one name yield exactly one).
   */
  insertCertificate(
    rec: Omit<CertificateRecord, "revokedAt" | "revocationReason" | "revocationSeq">,
  ): void {
    try {
      this.#db.prepare(
        `INSERT INTO certificates
           (serial, name, name_key, role, certificate, fingerprint, not_before, not_after, issued_at,
            endpoint, endpoint_key, renewed_from)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        rec.serial,
        rec.name,
        rec.name.toLowerCase(),
        rec.role,
        rec.certificate,
        rec.fingerprint,
        rec.notBefore,
        rec.notAfter,
        rec.issuedAt,
        rec.endpoint ?? null,
        (rec.endpoint ?? "").toLowerCase(),
        rec.renewedFrom ?? null,
      );
    } catch (err) {
      if (/UNIQUE constraint failed: certificates\.name_key/.test((err as Error).message)) {
        throw caError(
          "name_taken",
          rec.endpoint
            ? `Certificate "${rec.name}" for endpoint "${rec.endpoint}" already exists`
            : `Certificate "${rec.name}" already exists`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * The live (unrevoked, not superseded) user certificate of `name` for `endpoint` (default:
   * the user's legacy certificate, issued for no endpoint), matched without regard to case.
   */
  liveUserCertificate(name: string, endpoint = ""): CertificateRecord | undefined {
    const row = this.#db.prepare(
      `SELECT * FROM certificates WHERE name_key = ? AND endpoint_key = ? AND role = 'user'
       AND revoked_at IS NULL AND superseded_at IS NULL`,
    ).get(name.toLowerCase(), endpoint.toLowerCase()) as Row | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Every live user certificate of `name` (legacy and per device), oldest first. */
  liveUserCertificates(name: string): CertificateRecord[] {
    return (this.#db.prepare(
      `SELECT * FROM certificates WHERE name_key = ? AND role = 'user' AND revoked_at IS NULL
       AND superseded_at IS NULL ORDER BY issued_at, serial`,
    ).all(name.toLowerCase()) as Row[]).map(toRecord);
  }

  /** The certificate with `serial` (hex, any case, leading zeros ignored), if issued here. */
  bySerial(serial: string): CertificateRecord | undefined {
    const row = this.#db.prepare("SELECT * FROM certificates WHERE serial = ?")
      .get(serial.toLowerCase().replace(/^0+(?=.)/, "")) as Row | undefined;
    return row ? toRecord(row) : undefined;
  }

  /**
   * Records `next`, a renewal of the live certificate `previous`, and marks `previous`
   * superseded, in one transaction. Throws `Conflict` if `previous` is no longer live.
   */
  insertRenewal(
    previous: CertificateRecord,
    next: Omit<CertificateRecord, "revokedAt" | "revocationReason" | "revocationSeq">,
  ): void {
    this.#transaction(() => {
      const changed = this.#db.prepare(
        `UPDATE certificates SET superseded_at = ? WHERE serial = ? AND revoked_at IS NULL
         AND superseded_at IS NULL`,
      ).run(new Date().toISOString(), previous.serial);
      if (Number(changed.changes) !== 1) {
        throw caError("not_live", "That certificate was revoked or renewed already");
      }
      this.insertCertificate(next);
    });
  }

  /**
   * Revokes every certificate of user `name` for `endpoint` that has not expired (the live
   * one and those it renewed), in one transaction. Throws `NotFound` if there is none.
   */
  revokeDevice(name: string, endpoint: string, reason: string): CertificateRecord[] {
    return this.#transaction(() => {
      const rows = this.#db.prepare(
        `SELECT * FROM certificates WHERE name_key = ? AND endpoint_key = ? AND role = 'user'
         AND revoked_at IS NULL AND not_after > ? ORDER BY issued_at, serial`,
      ).all(name.toLowerCase(), endpoint.toLowerCase(), new Date().toISOString()) as Row[];
      if (!rows.length) {
        throw caError(
          "unknown_certificate",
          `No live certificate of "${name}" for endpoint "${endpoint}"`,
        );
      }
      return rows.map((r) => this.#markRevoked(toRecord(r), reason));
    });
  }

  /**
   * Revokes every unexpired certificate of user `name`, on every endpoint. Throws `NotFound`
   * if there is none.
   */
  revokeAllOfUser(name: string, reason: string): CertificateRecord[] {
    return this.#transaction(() => {
      const rows = this.#db.prepare(
        `SELECT * FROM certificates WHERE name_key = ? AND role = 'user' AND revoked_at IS NULL
         AND (not_after > ? OR (endpoint_key = '' AND superseded_at IS NULL))
         ORDER BY issued_at, serial`,
      ).all(name.toLowerCase(), new Date().toISOString()) as Row[];
      if (!rows.length) throw caError("unknown_certificate", `Unknown certificate "${name}"`);
      // The walkthrough's answer names the legacy certificate first, as before.
      rows.sort((a, b) => (a.endpoint_key === "" ? 0 : 1) - (b.endpoint_key === "" ? 0 : 1));
      return rows.map((r) => this.#markRevoked(toRecord(r), reason));
    });
  }

  /**
   * Revokes the user certificate with `serial` and every unexpired certificate of the same
   * device (the renewals before and after it share its key). Throws `NotFound`.
   */
  revokeUserSerial(serial: string, reason: string): CertificateRecord[] {
    return this.#transaction(() => {
      const rec = this.bySerial(serial);
      if (!rec || rec.role !== "user" || rec.revokedAt !== null) {
        throw caError("unknown_certificate", `No live user certificate with serial ${serial}`);
      }
      // The device's other unexpired certificates are its renewals (same key): they go too. A
      // legacy certificate's device is the user's legacy slot.
      const rows = this.#db.prepare(
        `SELECT * FROM certificates WHERE name_key = ? AND endpoint_key = ? AND role = 'user'
         AND revoked_at IS NULL AND not_after > ? ORDER BY issued_at, serial`,
      ).all(
        rec.name.toLowerCase(),
        (rec.endpoint ?? "").toLowerCase(),
        new Date().toISOString(),
      ) as Row[];
      const all = rows.map(toRecord);
      if (!all.some((r) => r.serial === rec.serial)) all.push(rec);
      return all.map((r) => this.#markRevoked(r, reason));
    });
  }

  /** The SQLite handle, for the other tables of this file (`invites.ts`). */
  get database(): DatabaseSync {
    return this.#db;
  }

  /** Every certificate ever issued, oldest first. */
  list(): CertificateRecord[] {
    return (this.#db.prepare("SELECT * FROM certificates ORDER BY issued_at, serial")
      .all() as Row[])
      .map(toRecord);
  }

  /**
   * Revokes the live user certificate of `name` and returns it with its new
   * revocation sequence number. Throws `NotFound` if there is none.
   */
  revokeUser(name: string, reason: string): CertificateRecord {
    return this.#transaction(() => {
      const live = this.liveUserCertificate(name);
      if (!live) throw caError("unknown_certificate", `Unknown certificate "${name}"`);
      return this.#markRevoked(live, reason);
    });
  }

  /** Marks the live hub certificate with `serial` (hex) revoked. Throws `NotFound` if there is none. */
  revokeHub(serial: string, reason: string): CertificateRecord {
    return this.#transaction(() => {
      const row = this.#db.prepare(
        "SELECT * FROM certificates WHERE serial = ? AND role = 'hub' AND revoked_at IS NULL",
      ).get(serial.toLowerCase()) as Row | undefined;
      if (!row) {
        throw caError("unknown_certificate", `No live hub certificate with serial ${serial}`);
      }
      return this.#markRevoked(toRecord(row), reason);
    });
  }

  /** Marks `live` revoked with the next revocation sequence number; call inside a transaction. */
  #markRevoked(live: CertificateRecord, reason: string): CertificateRecord {
    const seq = this.lastRevocationSeq() + 1;
    const revokedAt = new Date().toISOString();
    this.#db.prepare(
      "UPDATE certificates SET revoked_at = ?, revocation_reason = ?, revocation_seq = ? WHERE serial = ?",
    ).run(revokedAt, reason, seq, live.serial);
    return { ...live, revokedAt, revocationReason: reason, revocationSeq: seq };
  }

  /** The sequence number of the newest revocation, 0 when none. */
  lastRevocationSeq(): number {
    const row = this.#db.prepare("SELECT MAX(revocation_seq) AS seq FROM certificates")
      .get() as Row;
    return (row.seq as number | null) ?? 0;
  }

  /** Revocations with a sequence number above `since`, in order, at most `limit`. */
  revocationsSince(since: number, limit = 1000): Revocation[] {
    const rows = this.#db.prepare(
      `SELECT revocation_seq, serial, name, revoked_at, revocation_reason FROM certificates
       WHERE revocation_seq > ? ORDER BY revocation_seq LIMIT ?`,
    ).all(since, limit) as Row[];
    return rows.map((r) => ({
      seq: r.revocation_seq as number,
      serial: r.serial as string,
      name: r.name as string,
      revokedAt: r.revoked_at as string,
      reason: r.revocation_reason as string,
    }));
  }

  /**
   * Revoked certificates still valid at `now` (ISO time) whose revocation
   * sequence number is above `afterSeq`, in revocation order: what the CRL
   * lists. A certificate past its notAfter is refused for its expiry anyway,
   * so its entry leaves the CRL (RFC 5280 3.3) and the CRL stops growing
   * without bound.
   */
  crlEntries(now: string, afterSeq = 0): CrlRow[] {
    return (this.#db.prepare(
      `SELECT revocation_seq, serial, revoked_at, not_after FROM certificates
       WHERE revocation_seq > ? AND not_after > ? ORDER BY revocation_seq`,
    ).all(afterSeq, now) as Row[]).map((r) => ({
      seq: r.revocation_seq as number,
      serial: r.serial as string,
      revokedAt: r.revoked_at as string,
      notAfter: r.not_after as string,
    }));
  }

  /** The last signed CRL, if any. */
  crl(): StoredCrl | undefined {
    const row = this.#db.prepare("SELECT * FROM crl WHERE id = 1").get() as Row | undefined;
    if (!row) return undefined;
    return {
      number: row.number as number,
      revocationSeq: row.revocation_seq as number,
      nextUpdate: row.next_update as string,
      pem: row.pem as string,
    };
  }

  /** Replaces the stored CRL. */
  saveCrl(crl: StoredCrl): void {
    this.#db.prepare(
      `INSERT INTO crl (id, number, revocation_seq, next_update, pem) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET number = excluded.number,
         revocation_seq = excluded.revocation_seq, next_update = excluded.next_update, pem = excluded.pem`,
    ).run(crl.number, crl.revocationSeq, crl.nextUpdate, crl.pem);
  }

  /** Closes the database; no method may be called afterwards. */
  close(): void {
    this.#db.close();
  }
}
