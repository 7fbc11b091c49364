/**
 * One process per state database, with real files and a real second
 * process: the lock holds against another process and against a second
 * open in this one, names the holder's pid, dies with its process, and is
 * released once however often `release` is called.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { startProc } from "../tests/fixtures/harness.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";
import { displayPath, lockState } from "./state_lock.ts";

Deno.test("lockState writes the pid into a 0600 lock file beside the database, in a new 0700 directory", async () => {
  await using t = await tempDir("ztm-state-lock-");
  const database = join(t.path, "state", "agent.db");
  const lock = lockState(database, "agent");
  lock.release();
  // A longer pid left by a process that died is overwritten whole.
  Deno.writeTextFileSync(lock.path, "123456789012345\n");
  const again = lockState(database, "agent");
  try {
    assert.equal(lock.path, `${database}.lock`);
    assert.equal(Deno.readTextFileSync(lock.path), `${Deno.pid}\n`);
    assert.equal(Deno.statSync(lock.path).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(join(t.path, "state")).mode! & 0o777, 0o700);
  } finally {
    again.release();
  }
  // The file stays (removing it would race a starting process).
  assert.ok(Deno.statSync(`${database}.lock`).isFile);
});

Deno.test("a second lock on the same database in this process is refused until the first is released", async () => {
  await using t = await tempDir("ztm-state-lock-");
  const database = join(t.path, "ca.db");
  const first = lockState(database, "CA");
  assert.throws(() => lockState(database, "CA", "--db"), {
    name: "Conflict",
    status: 409,
    code: "state_in_use",
    message: `another CA (pid ${Deno.pid}) is using ${database}; ` +
      "stop it first, or give this one its own --db",
  });
  // Another database is not affected.
  lockState(join(t.path, "other.db"), "CA").release();
  first.release();
  first.release(); // idempotent: does not close another lock's file
  const second = lockState(database, "CA");
  first.release();
  assert.throws(() => lockState(database, "CA"), { code: "state_in_use" });
  second.release();
});

Deno.test("a lock held by another process is refused naming its pid, and freed when it dies", async () => {
  await using t = await tempDir("ztm-state-lock-");
  const database = join(t.path, "hub.db");
  const module = new URL("./state_lock.ts", import.meta.url).href;
  const child = startProc("holder", Deno.execPath(), [
    "eval",
    `import { lockState } from ${JSON.stringify(module)};
     lockState(${JSON.stringify(database)}, "hub");
     console.error(JSON.stringify({ msg: "locked" }));
     setInterval(() => {}, 60_000);`,
  ]);
  try {
    await child.waitForLog((l) => l.msg === "locked", 10_000);
    assert.throws(() => lockState(database, "hub"), {
      code: "state_in_use",
      message: new RegExp(`^another hub \\(pid ${child.child.pid}\\) is using `),
    });
  } finally {
    await child.kill();
  }
  // kill -9 leaves no stale lock: the kernel dropped it with the process.
  const lock = lockState(database, "hub");
  assert.equal(Deno.readTextFileSync(lock.path), `${Deno.pid}\n`);
  lock.release();
});

Deno.test("lockState names the database and flag when it cannot create the lock file", async () => {
  await using t = await tempDir("ztm-state-lock-");
  const file = join(t.path, "plain-file");
  Deno.writeTextFileSync(file, "");
  assert.throws(() => lockState(join(file, "agent.db"), "agent", "--data-dir"), {
    message: new RegExp(`^Cannot use ${file}/agent\\.db \\(--data-dir\\): cannot create `),
  });
});

Deno.test("displayPath shows paths under the home directory with ~", () => {
  const home = Deno.env.get("HOME");
  if (home) {
    assert.equal(displayPath(`${home}/ztm.db`), "~/ztm.db");
    assert.equal(displayPath(`${home}/a/b.db`), "~/a/b.db");
    // A sibling that only starts with the same letters is not under home.
    assert.equal(displayPath(`${home}x/ztm.db`), `${home}x/ztm.db`);
    assert.equal(displayPath(home), home);
  }
  assert.equal(displayPath("/nonexistent-root/ztm.db"), "/nonexistent-root/ztm.db");
});
