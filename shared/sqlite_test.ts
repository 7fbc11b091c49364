/**
 * `openDatabase` and `transaction` on real SQLite files in a temp dir: the
 * file and its WAL companions are 0600, the pragmas are set, migrations run
 * forward once each and all-or-nothing, and a newer schema or a directory is
 * refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { tempDir } from "../tests/fixtures/temp_dir.ts";
import { openDatabase, transaction } from "./sqlite.ts";

const MIGRATIONS = [
  "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)",
  "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER NOT NULL REFERENCES a(id))",
];

const pragma = (db: DatabaseSync, name: string) =>
  Object.values(db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown>)[0];

/** How many files this process has open (Linux), or -1 where that cannot be read. */
function openFiles(): number {
  try {
    return [...Deno.readDirSync("/proc/self/fd")].length;
  } catch {
    return -1;
  }
}

const tables = (db: DatabaseSync) =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
    name: string;
  }[]).map((r) => r.name);

Deno.test("openDatabase makes a 0600 WAL file with synchronous=FULL and foreign keys, in a 0700 directory", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const path = join(t.path, "state", "x.db");
  const db = openDatabase(path, MIGRATIONS);
  try {
    assert.equal(pragma(db, "journal_mode"), "wal");
    assert.equal(pragma(db, "synchronous"), 2);
    assert.equal(pragma(db, "foreign_keys"), 1);
    assert.equal(pragma(db, "busy_timeout"), 5000);
    assert.equal(pragma(db, "user_version"), 2);
    db.prepare("INSERT INTO a (v) VALUES (?)").run("x");
    assert.throws(() => db.prepare("INSERT INTO b (a_id) VALUES (99)").run(), /FOREIGN KEY/);
    for (const f of ["x.db", "x.db-wal", "x.db-shm"]) {
      assert.equal(Deno.statSync(join(t.path, "state", f)).mode! & 0o777, 0o600, f);
    }
    assert.equal(Deno.statSync(join(t.path, "state")).mode! & 0o777, 0o700);
  } finally {
    db.close();
  }
});

Deno.test("openDatabase makes an existing world-readable file 0600 and refuses a directory", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const path = join(t.path, "x.db");
  Deno.writeFileSync(path, new Uint8Array(), { mode: 0o644 });
  Deno.chmodSync(path, 0o644);
  openDatabase(path, []).close();
  assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
  const dir = join(t.path, "home");
  Deno.mkdirSync(dir, { mode: 0o755 });
  Deno.chmodSync(dir, 0o755);
  assert.throws(() => openDatabase(dir, []), { message: `Database "${dir}" is not a file` });
  assert.equal(Deno.statSync(dir).mode! & 0o777, 0o755, "a directory's mode is left alone");
});

Deno.test("openDatabase applies only the migrations a file has not seen, and keeps its data", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const path = join(t.path, "x.db");
  const first = openDatabase(path, MIGRATIONS.slice(0, 1));
  assert.equal(pragma(first, "user_version"), 1);
  first.prepare("INSERT INTO a (v) VALUES ('kept')").run();
  first.close();
  // The first migration would fail if it ran again (the table exists).
  const second = openDatabase(path, MIGRATIONS);
  try {
    assert.equal(pragma(second, "user_version"), 2);
    assert.deepEqual(tables(second), ["a", "b"]);
    assert.deepEqual(second.prepare("SELECT v FROM a").all().map((r) => r.v), ["kept"]);
  } finally {
    second.close();
  }
});

Deno.test("openDatabase refuses a file of a newer schema and leaves it as it was", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const path = join(t.path, "x.db");
  openDatabase(path, MIGRATIONS).close();
  const fds = openFiles();
  assert.throws(() => openDatabase(path, MIGRATIONS.slice(0, 1)), {
    message: "Database schema 2 is newer than this ztm (1)",
  });
  assert.equal(openFiles(), fds, "the refused open left a file open");
  // The refused open closed its handle: the file opens again, unchanged.
  const db = openDatabase(path, MIGRATIONS);
  assert.equal(pragma(db, "user_version"), 2);
  db.close();
});

Deno.test("a migration that fails leaves the schema version and tables as they were", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const path = join(t.path, "x.db");
  openDatabase(path, MIGRATIONS.slice(0, 1)).close();
  const broken = [MIGRATIONS[0], "CREATE TABLE c (id INTEGER); INSERT INTO nosuch VALUES (1)"];
  assert.throws(() => openDatabase(path, broken), /nosuch/);
  const db = openDatabase(path, MIGRATIONS.slice(0, 1));
  try {
    assert.equal(pragma(db, "user_version"), 1);
    assert.deepEqual(tables(db), ["a"]);
  } finally {
    db.close();
  }
});

Deno.test("transaction commits what its function did when it returns, and rolls all of it back when it throws", async () => {
  await using t = await tempDir("ztm-sqlite-");
  const db = openDatabase(join(t.path, "x.db"), MIGRATIONS);
  try {
    const insert = db.prepare("INSERT INTO a (v) VALUES (?)");
    assert.equal(transaction(db, () => (insert.run("one"), insert.run("two"), 42)), 42);
    const boom = new Error("boom");
    assert.throws(() =>
      transaction(db, () => {
        insert.run("three");
        throw boom;
      }), (err) => err === boom);
    assert.deepEqual(db.prepare("SELECT v FROM a ORDER BY id").all().map((r) => r.v), [
      "one",
      "two",
    ]);
    // Not left inside a transaction: the next one begins.
    transaction(db, () => insert.run("four"));
    assert.equal((db.prepare("SELECT count(*) AS n FROM a").get() as { n: number }).n, 3);
  } finally {
    db.close();
  }
});
