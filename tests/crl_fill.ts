/**
 * Fills a CA database with many revoked certificates, as a CA that has run
 * for years would hold: the rows `DELETE /api/certificates/{name}` leaves,
 * written in one transaction (issuing and revoking 100,000 users through the
 * API would take hours and test nothing more). Used by the revocation tests
 * and `bench/revoke.ts`; the CA process is started on the file afterwards.
 */
import { DatabaseSync } from "node:sqlite";
import { CaStore } from "../ca/store.ts";
import { normalizeSerial } from "@ztm/shared/crl";

/**
 * Adds `valid` revoked certificates that are still within their validity and
 * `expired` ones past their notAfter to the CA database at `path` (created and
 * migrated if missing). Returns the serials of the valid ones.
 */
export function fillRevocations(path: string, valid: number, expired = 0): string[] {
  CaStore.open(path).close(); // creates and migrates the schema
  const db = new DatabaseSync(path);
  const serials: string[] = [];
  try {
    const seq0 = (db.prepare("SELECT MAX(revocation_seq) AS s FROM certificates").get() as {
      s: number | null;
    }).s ?? 0;
    const insert = db.prepare(
      `INSERT INTO certificates (serial, name, name_key, role, certificate, fingerprint, not_before,
         not_after, issued_at, revoked_at, revocation_reason, revocation_seq)
       VALUES (?, ?, ?, 'user', '', '', ?, ?, ?, ?, 'revoked by administrator', ?)`,
    );
    const now = Date.now();
    const day = 24 * 3600 * 1000;
    db.exec("BEGIN");
    for (let i = 0; i < valid + expired; i++) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      bytes[0] = (bytes[0] & 0x7f) | 0x01;
      const serial = normalizeSerial(bytes.toHex());
      const isValid = i < valid;
      const issued = new Date(now - (isValid ? 30 : 400) * day).toISOString();
      const notAfter = new Date(now + (isValid ? 335 : -35) * day).toISOString();
      const revokedAt = new Date(now - (isValid ? 20 : 200) * day + i * 1000).toISOString();
      const name = `gone-${i}-${serial.slice(0, 8)}`;
      insert.run(serial, name, name, issued, notAfter, issued, revokedAt, seq0 + i + 1);
      if (isValid) serials.push(serial);
    }
    db.exec("COMMIT");
  } finally {
    db.close();
  }
  return serials;
}
