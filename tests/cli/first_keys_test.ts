/**
 * First contact, keys lying around: the README's curl lines write keys
 * `0600` without echoing them, and the files a walkthrough leaves in a
 * checkout are ignored by git (while no tracked file is).
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Harness, ROOT, run } from "../fixtures/harness.ts";

/** The README's `sh` blocks, in order. */
function readmeShellBlocks(): string[] {
  const readme = Deno.readTextFileSync(join(ROOT, "README.md"));
  return [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

Deno.test("the README's curl walkthrough writes keys 0600 and never prints them", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const blocks = readmeShellBlocks();
  // No README line sends a private key to the terminal.
  for (const block of blocks) {
    for (const line of block.split("\n")) {
      assert(!/-X POST.*\|\s*tee|tee \S+\.key/.test(line), `README echoes a key: ${line}`);
    }
  }
  const walkthrough = blocks.find((b) => b.includes("certificates/alice -X POST"));
  assert(walkthrough, "the README has the hub machine's curl lines");
  const lines = walkthrough.split("\n").filter((l) => /^(umask|curl) /.test(l));
  assert(lines[0].startsWith("umask 077"), lines.join("\n"));
  const script = lines.join("\n").replaceAll("localhost:9999", `localhost:${ca.port}`);
  const dir = await h.tempDir("ztm-readme-");
  const out = await run("bash", ["-c", `set -euo pipefail\n${script}`], { cwd: dir });
  assert(!/PRIVATE KEY/.test(out.stdout + out.stderr), "a key was printed");
  for (const f of ["alice.key", "bob.key"]) {
    assert(Deno.readTextFileSync(join(dir, f)).startsWith("-----BEGIN PRIVATE KEY-----"), f);
    assertEquals(Deno.statSync(join(dir, f)).mode! & 0o777, 0o600, f);
  }
  for (const f of ["ca.crt", "alice.crt", "bob.crt"]) {
    assert(Deno.readTextFileSync(join(dir, f)).startsWith("-----BEGIN CERTIFICATE-----"), f);
  }
});

Deno.test("keys, certificates, tokens and databases made in a checkout are ignored by git, tracked files are not", async () => {
  const made = [
    "alice.key",
    "alice.crt",
    "ca.crt",
    "alice.csr",
    "ztm.db",
    "ztm.db-wal",
    "ztm.db.token",
    "ztm.db.lock",
    "ztm-ca.db",
    "ztm-ca.db-shm",
    "ztm-ca.db.token",
    "sub/dir/bob.key",
  ];
  const check = await run("git", ["check-ignore", "--no-index", ...made], {
    cwd: ROOT,
    allowFail: true,
  });
  assertEquals(check.stdout.trim().split("\n").sort(), [...made].sort(), check.stderr);
  const tracked = await run("git", ["ls-files", "-ci", "--exclude-standard"], { cwd: ROOT });
  assertEquals(tracked.stdout, "", "no tracked file is ignored");
  for (
    const f of ["deno.json", "deno.lock", "tests/cli/cli_token_test.ts", "shared/state_lock.ts"]
  ) {
    const one = await run("git", ["check-ignore", "--no-index", f], { cwd: ROOT, allowFail: true });
    assertEquals(one.code, 1, `${f} is not ignored`);
  }
});
