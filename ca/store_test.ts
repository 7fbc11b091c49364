/**
 * `CaStore` on real SQLite files in a temp dir: schema, modes, uniqueness,
 * revocation order, the stored CRL, and reopening.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CaStore, type CertificateRecord } from "./store.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";

let serialCounter = 0;
/** A certificate record as the issuer would insert it. */
function record(
  name: string,
  role: "user" | "hub" = "user",
): Omit<CertificateRecord, "revokedAt" | "revocationReason" | "revocationSeq"> {
  const serial = (++serialCounter).toString(16).padStart(8, "0") + "aa";
  return {
    serial,
    name,
    role,
    certificate: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----\n`,
    fingerprint: serial.repeat(4),
    notBefore: "2025-01-01T00:00:00.000Z",
    notAfter: "2026-01-01T00:00:00.000Z",
    issuedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, serialCounter)).toISOString(),
  };
}

Deno.test("open creates a 0600 WAL database at schema version 3", async () => {
  await using dir = await tempDir("ztm-store-");
  const path = join(dir.path, "sub", "ca.db");
  const store = CaStore.open(path);
  try {
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    store.insertCertificate(record("root"));
    for (const f of [`${path}-wal`, `${path}-shm`]) {
      assert.equal((await Deno.stat(f)).mode! & 0o777, 0o600, f);
    }
    assert.equal((await Deno.stat(join(dir.path, "sub"))).mode! & 0o777, 0o700);
  } finally {
    store.close();
  }
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    assert.deepEqual({ ...db.prepare("PRAGMA user_version").get() }, { user_version: 3 });
    assert.deepEqual({ ...db.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
  } finally {
    db.close();
  }
});

Deno.test("open tightens an existing database file to 0600", async () => {
  await using dir = await tempDir("ztm-store-");
  const path = join(dir.path, "ca.db");
  await Deno.writeFile(path, new Uint8Array(), { mode: 0o644 });
  await Deno.chmod(path, 0o644);
  CaStore.open(path).close();
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
});

Deno.test("open refuses a path that is a directory and leaves its mode alone", async () => {
  await using dir = await tempDir("ztm-store-");
  await Deno.chmod(dir.path, 0o755);
  assert.throws(() => CaStore.open(dir.path), /not a file/);
  assert.equal((await Deno.stat(dir.path)).mode! & 0o777, 0o755);
});

Deno.test("open refuses a database written by a newer schema", async () => {
  await using dir = await tempDir("ztm-store-");
  const path = join(dir.path, "ca.db");
  const db = new DatabaseSync(path);
  db.exec("PRAGMA user_version = 4");
  db.close();
  assert.throws(() => CaStore.open(path), /schema 4 is newer/);
});

Deno.test("saveCa keeps the first CA and reopening returns it", async () => {
  await using dir = await tempDir("ztm-store-");
  const path = join(dir.path, "ca.db");
  const store = CaStore.open(path);
  assert.equal(store.ca(), undefined);
  store.saveCa(new Uint8Array([1, 2, 3]), "first");
  store.saveCa(new Uint8Array([4, 5, 6]), "second");
  store.close();
  const again = CaStore.open(path);
  try {
    const ca = again.ca()!;
    assert.equal(ca.certificate, "first");
    assert.deepEqual([...ca.privateKey], [1, 2, 3]);
  } finally {
    again.close();
  }
});

Deno.test("a name has at most one live user certificate, without regard to case", async () => {
  await using dir = await tempDir("ztm-store-");
  const store = CaStore.open(join(dir.path, "ca.db"));
  try {
    store.insertCertificate(record("Root"));
    for (const name of ["Root", "root", "ROOT"]) {
      assert.throws(() => store.insertCertificate(record(name)), {
        name: "Conflict",
        status: 409,
        code: "name_taken",
      });
    }
    // Hub certificates do not take user names, and several hub certificates may share one.
    store.insertCertificate(record("root", "hub"));
    store.insertCertificate(record("root", "hub"));
    assert.equal(store.liveUserCertificate("rOOt")?.name, "Root");
    // After a revocation the name is free.
    store.revokeUser("root", "test");
    assert.equal(store.liveUserCertificate("root"), undefined);
    store.insertCertificate(record("root"));
    assert.equal(store.liveUserCertificate("ROOT")?.name, "root");
    assert.equal(store.list().length, 4);
  } finally {
    store.close();
  }
});

Deno.test("a duplicate serial is an error, not a name conflict", async () => {
  await using dir = await tempDir("ztm-store-");
  const store = CaStore.open(join(dir.path, "ca.db"));
  try {
    const r = record("a");
    store.insertCertificate(r);
    assert.throws(
      () => store.insertCertificate({ ...r, name: "b" }),
      (err: Error) => err.name !== "Conflict" && /UNIQUE/.test(err.message),
    );
  } finally {
    store.close();
  }
});

Deno.test("revokeUser numbers revocations in order and the feed returns them after since", async () => {
  await using dir = await tempDir("ztm-store-");
  const store = CaStore.open(join(dir.path, "ca.db"));
  try {
    for (const n of ["a", "b", "c"]) store.insertCertificate(record(n));
    assert.equal(store.lastRevocationSeq(), 0);
    const b = store.revokeUser("B", "lost");
    const a = store.revokeUser("a", "left");
    assert.deepEqual([b.revocationSeq, a.revocationSeq], [1, 2]);
    assert.equal(b.revocationReason, "lost");
    assert.ok(b.revokedAt);
    assert.equal(store.lastRevocationSeq(), 2);
    assert.deepEqual(store.revocationsSince(0).map((r) => [r.seq, r.name, r.reason]), [
      [1, "b", "lost"],
      [2, "a", "left"],
    ]);
    assert.deepEqual(store.revocationsSince(1).map((r) => r.name), ["a"]);
    assert.deepEqual(store.revocationsSince(0, 1).map((r) => r.name), ["b"]);
    assert.deepEqual(store.revocationsSince(2), []);
    assert.throws(() => store.revokeUser("a", "again"), { name: "NotFound", status: 404 });
    assert.throws(() => store.revokeUser("zed", "x"), { code: "unknown_certificate" });
    assert.equal(store.lastRevocationSeq(), 2);
    const listed = store.list();
    assert.deepEqual(listed.map((r) => [r.name, r.revokedAt !== null]), [
      ["a", true],
      ["b", true],
      ["c", false],
    ]);
  } finally {
    store.close();
  }
});

Deno.test("saveCrl replaces the stored CRL", async () => {
  await using dir = await tempDir("ztm-store-");
  const store = CaStore.open(join(dir.path, "ca.db"));
  try {
    assert.equal(store.crl(), undefined);
    store.saveCrl({
      number: 1,
      revocationSeq: 0,
      nextUpdate: "2030-01-01T00:00:00.000Z",
      pem: "a",
    });
    store.saveCrl({
      number: 2,
      revocationSeq: 3,
      nextUpdate: "2031-01-01T00:00:00.000Z",
      pem: "b",
    });
    assert.deepEqual(store.crl(), {
      number: 2,
      revocationSeq: 3,
      nextUpdate: "2031-01-01T00:00:00.000Z",
      pem: "b",
    });
  } finally {
    store.close();
  }
});

Deno.test("certificates and revocations survive closing and reopening", async () => {
  await using dir = await tempDir("ztm-store-");
  const path = join(dir.path, "ca.db");
  const store = CaStore.open(path);
  store.insertCertificate(record("a"));
  store.insertCertificate(record("b"));
  store.revokeUser("a", "gone");
  const before = store.list();
  store.close();
  const again = CaStore.open(path);
  try {
    assert.deepEqual(again.list(), before);
    assert.equal(again.lastRevocationSeq(), 1);
    assert.equal(again.liveUserCertificate("b")?.serial, before[1].serial);
  } finally {
    again.close();
  }
});
