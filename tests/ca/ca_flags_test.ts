/**
 * `ztm ca` on the command line: `--help`, `--version`, and the exit status 2
 * with one error line plus the usage for a bad flag. Each runs the real entry
 * point as a process.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, run } from "../fixtures/harness.ts";

/** Runs `ca/main.ts` with `args` to completion. */
async function ztmCa(args: string[]) {
  return await run(Deno.execPath(), ["run", "--allow-all", join(ROOT, "ca/main.ts"), ...args], {
    cwd: ROOT,
    allowFail: true,
  });
}

Deno.test("ztm ca --help prints the usage with every default and exits 0", async () => {
  const out = await ztmCa(["--help"]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr, "");
  assert.match(out.stdout, /^Usage: ztm ca \[flags\]\n/);
  assert.match(
    out.stdout,
    /--listen=ADDRESS\s+address of the REST API \(default: 127\.0\.0\.1:9999\)/,
  );
  assert.match(out.stdout, /--database=PATH\s+.*\(default: ~\/ztm-ca\.db\)/);
  assert.match(out.stdout, /--token-file=PATH\s+.*<database>\.token/);
  assert.match(out.stdout, /--help\s+show this help and exit/);
  assert.match(out.stdout, /--version\s+print the version and exit/);
});

Deno.test("ztm ca --version prints the version and exits 0", async () => {
  const out = await ztmCa(["--version"]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^ztm ca \d+\.\d+\.\d+\n$/);
});

Deno.test("ztm ca --bogus exits 2 with one error line and the usage", async () => {
  const out = await ztmCa(["--bogus"]);
  assert.equal(out.code, 2);
  assert.equal(out.stdout, "");
  const [first, blank, usage] = out.stderr.split("\n");
  assert.match(first, /^ztm ca: .*--bogus/);
  assert.equal(blank, "");
  assert.equal(usage, "Usage: ztm ca [flags]");
  assert.match(out.stderr, /--listen=ADDRESS/);
});

Deno.test("ztm ca refuses a bad --listen address with exit 2 naming the value", async () => {
  for (const listen of ["nonsense:99999", "127.0.0.1", "::1:80", "a b:1", "host:-1"]) {
    const out = await ztmCa([`--listen=${listen}`, "--database=/nonexistent/never-made.db"]);
    assert.equal(out.code, 2, `${listen}: ${out.stderr}`);
    const [first, blank] = out.stderr.split("\n");
    assert.match(first, /^ztm ca: --listen: /, listen);
    assert.ok(first.includes(listen), first);
    assert.equal(blank, "");
    assert.match(out.stderr, /Usage: ztm ca \[flags\]/);
  }
});

Deno.test("ztm ca refuses a positional argument with exit 2", async () => {
  const out = await ztmCa(["serve"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr.split("\n")[0], /^ztm ca: .*serve/);
});

Deno.test("ztm ca exits 1 and leaves the directory's mode alone when --database names a directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ztm-ca-" });
  try {
    await Deno.chmod(dir, 0o755);
    const out = await ztmCa(["--listen=127.0.0.1:0", `--database=${dir}`]);
    assert.equal(out.code, 1, out.stderr);
    const lines = out.stderr.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.at(-1).msg, "start failed");
    assert.equal(lines.at(-1).level, "error");
    assert.match(lines.at(-1).err, /not a file/);
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o755);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
