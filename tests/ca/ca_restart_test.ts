/**
 * The CA's state on disk, with real processes: what survives a restart, the
 * files' modes, that no user key ever reaches the database, and a `kill -9`
 * in the middle of a burst of issues.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import {
  call,
  databaseFiles,
  indexOfBytes,
  inspectDatabase,
  keyFingerprints,
  listCertificates,
  makeCsr,
  withDatabase,
} from "../fixtures/ca_helpers.ts";
import { seededRandom } from "../fixtures/fault_helpers.ts";

Deno.test("a restarted CA keeps its certificate byte for byte, its certificates and its revocations", async () => {
  await using h = new Harness();
  const first = await h.startCa();
  const caPem = (await call(`${first.url}/api/certificates/ca`)).text;
  for (const name of ["root", "alice", "bob"]) {
    assert.equal(
      (await call(`${first.url}/api/certificates/${name}`, { method: "POST" })).status,
      201,
    );
  }
  assert.equal(
    (await call(`${first.url}/api/certificates/alice`, { method: "DELETE" })).status,
    200,
  );
  const rootPem = (await call(`${first.url}/api/certificates/root`)).text;
  const list = await listCertificates(first.url);
  const feed = (await call(`${first.url}/api/revocations`)).text;
  const crl = (await call(`${first.url}/api/crl`)).text;
  const token = await Deno.readTextFile(`${first.database}.token`);
  const stopped = await first.stop();
  assert.equal(stopped.code, 0);

  const second = await h.startCa({ dir: first.dir });
  assert.equal((await call(`${second.url}/api/certificates/ca`)).text, caPem);
  assert.equal((await call(`${second.url}/api/certificates/root`)).text, rootPem);
  assert.equal((await call(`${second.url}/api/certificates/alice`)).status, 404);
  assert.deepEqual(await listCertificates(second.url), list);
  assert.equal((await call(`${second.url}/api/revocations`)).text, feed);
  assert.equal((await call(`${second.url}/api/crl`)).text, crl);
  assert.equal(await Deno.readTextFile(`${second.database}.token`), token);
  // The restarted CA made no second CA, and issuing still works under the old one.
  assert.equal(second.logs.filter((l) => l.msg === "ca created").length, 0);
  assert.equal((await call(`${second.url}/api/certificates/bob`, { method: "POST" })).status, 409);
  assert.equal(
    (await call(`${second.url}/api/certificates/alice`, { method: "POST" })).status,
    201,
  );
  const revokedAgain = await call(`${second.url}/api/certificates/root`, { method: "DELETE" });
  assert.equal(JSON.parse(revokedAgain.text).revoked.name, "root");
  const feed2 = JSON.parse((await call(`${second.url}/api/revocations?since=1`)).text);
  assert.deepEqual(feed2.revocations.map((r: { seq: number }) => r.seq), [2]);
});

Deno.test("the CA database, its WAL files and its token file are 0600 and hold no user private key", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const keys: string[] = [];
  for (const name of ["root", "alice", "bob"]) {
    const reply = await call(`${ca.url}/api/certificates/${name}`, { method: "POST" });
    assert.equal(reply.status, 201);
    keys.push(reply.text);
  }
  assert.equal((await call(`${ca.url}/api/certificates/bob`, { method: "DELETE" })).status, 200);
  const { csr, keyPath } = await makeCsr(dir, "carol", { cn: "carol" });
  assert.equal(
    (await call(`${ca.url}/api/certificates/carol`, { method: "POST", body: csr })).status,
    201,
  );
  keys.push(await Deno.readTextFile(keyPath));
  assert.equal((await call(`${ca.url}/api/crl`)).status, 200);

  const secrets = (await Promise.all(keys.map(keyFingerprints))).flat();
  const marker = new TextEncoder().encode("PRIVATE KEY");
  const check = async (files: string[]) => {
    for (const file of files) {
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, `${file} mode`);
      const bytes = await Deno.readFile(file);
      assert.equal(indexOfBytes(bytes, marker), -1, `"PRIVATE KEY" in ${file}`);
      for (const secret of secrets) {
        assert.equal(indexOfBytes(bytes, secret), -1, `user key material in ${file}`);
      }
    }
  };

  // While the CA runs the WAL files exist.
  const running = await databaseFiles(ca.database);
  assert.deepEqual(running, [ca.database, `${ca.database}-wal`, `${ca.database}-shm`]);
  await check([...running, `${ca.database}.token`]);

  // After a stop (checkpoint) and after a kill (WAL left behind) the same holds.
  await ca.stop();
  await check([...await databaseFiles(ca.database), `${ca.database}.token`]);
  const again = await h.startCa({ dir: ca.dir });
  assert.equal((await call(`${again.url}/api/certificates/dave`, { method: "POST" })).status, 201);
  await again.kill();
  await check([...await databaseFiles(ca.database), `${ca.database}.token`]);
});

Deno.test("kill -9 during a burst of issues leaves a sound database holding every certificate answered 201", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const total = 100;
  const workers = 6;
  // A random moment (seed printed; FAULT_SEED=… repeats it) while others are still in flight.
  const killAfter = 5 + Math.floor(seededRandom("ca kill")() * 85);
  console.log(`kill -9 after ${killAfter} of ${total} certificates answered 201`);
  const answered: string[] = [];
  let next = 0;
  let killed: Promise<Deno.CommandStatus> | undefined;

  // A few requests always in flight; SIGKILL once `killAfter` have been answered, while others are open.
  const worker = async () => {
    while (next < total) {
      const name = `user-${String(next++).padStart(3, "0")}`;
      try {
        const reply = await call(`${ca.url}/api/certificates/${name}`, { method: "POST" });
        if (reply.status === 201) answered.push(name);
        else assert.fail(`${name}: ${reply.status} ${reply.text}`);
      } catch (err) {
        if (!killed) throw err;
        return; // The CA is gone; this request may or may not have committed.
      }
      if (answered.length >= killAfter && !killed) killed = ca.kill();
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  const status = await killed!;
  assert.equal(status.signal, "SIGKILL");
  assert.ok(answered.length >= killAfter && answered.length < total, `${answered.length} answered`);

  // The files as the killed process left them: integrity ok, every 201 present.
  const rows = inspectDatabase(ca.database);
  const stored = new Set(rows.map((r) => r.name));
  for (const name of answered) assert.ok(stored.has(name), `${name} answered 201 but not stored`);
  assert.ok(rows.length <= next, `${rows.length} rows for ${next} requests`);
  assert.ok(rows.every((r) => r.role === "user" && !r.revoked));
  const caRow = withDatabase(ca.database, (db) => db.prepare("SELECT COUNT(*) AS n FROM ca").get());
  assert.deepEqual({ ...caRow }, { n: 1 });

  // A new CA on the same files serves all of them and keeps issuing.
  const again = await h.startCa({ dir: ca.dir });
  const list = await listCertificates(again.url);
  assert.deepEqual(list.map((c) => c.name).sort(), [...stored].sort());
  for (const name of answered) {
    assert.equal((await call(`${again.url}/api/certificates/${name}`)).status, 200, name);
  }
  assert.equal(
    (await call(`${again.url}/api/certificates/after-crash`, { method: "POST" })).status,
    201,
  );
  await again.stop();
  assert.equal(inspectDatabase(ca.database).length, stored.size + 1);
});
