/**
 * SQLite files for ztm state (`node:sqlite`): created `0600` (SQLite gives
 * the `-wal`/`-shm` companions the main file's mode), WAL with
 * `synchronous=FULL` so an acknowledged change survives a crash, and a
 * schema versioned by `PRAGMA user_version` with forward-only migrations.
 */
import { DatabaseSync } from "node:sqlite";
import { touchPrivateFile } from "./files.ts";

/**
 * Opens `path` (creating it `0600`), sets the pragmas, and applies the
 * migrations the file has not seen (`migrations[v]` takes schema `v` to
 * `v + 1`). Throws if the file was written by a newer schema.
 */
export function openDatabase(path: string, migrations: string[]): DatabaseSync {
  touchPrivateFile(path);
  // A mistyped --database (a directory such as ~) must not be made 0600.
  if (!Deno.statSync(path).isFile) throw new Error(`Database "${path}" is not a file`);
  Deno.chmodSync(path, 0o600);
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA foreign_keys = ON");
    const row = db.prepare("PRAGMA user_version").get() as { user_version: number };
    if (row.user_version > migrations.length) {
      throw new Error(
        `Database schema ${row.user_version} is newer than this ztm (${migrations.length})`,
      );
    }
    for (let v = row.user_version; v < migrations.length; v++) {
      transaction(db, () => {
        db.exec(migrations[v]);
        db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Runs `fn` in one `BEGIN IMMEDIATE` transaction: committed if it returns, rolled back if it throws. */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const result = fn();
    db.exec("COMMIT");
    return result;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}
