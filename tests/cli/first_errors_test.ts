/**
 * First contact, errors in plain words: a certificate of another CA is
 * named with both CAs' fingerprints (and every new CA has a name of its
 * own), an unreadable file names its flag, and the `ztm` command installed
 * from the checkout (as the README says) works from any folder.
 */
import { dirname, join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm } from "../fixtures/cli_helpers.ts";
import { Harness, issueUser, ROOT, run } from "../fixtures/harness.ts";

Deno.test("two new CAs have different names, and a join with another CA's certificate names both", async () => {
  await using h = new Harness();
  const [ca1, ca2] = await Promise.all([h.startCa(), h.startCa()]);
  const hub = await h.startHub(ca1);
  const agent = await h.startAgent();
  const alice = await issueUser(ca1.url, "alice");
  const other = await issueUser(ca2.url, "alice");
  const dir = await h.tempDir("ztm-files-");
  Deno.writeTextFileSync(join(dir, "ca.crt"), alice.ca);
  Deno.writeTextFileSync(join(dir, "alice.crt"), other.certificate);
  Deno.writeTextFileSync(join(dir, "alice.key"), other.privateKey, { mode: 0o600 });
  const subject = async (pem: string) => {
    const out = await run("openssl", ["x509", "-noout", "-subject", "-fingerprint", "-sha256"], {
      stdin: pem,
    });
    const [, cn] = /subject=CN ?= ?(.+)/.exec(out.stdout)!;
    const fp = /Fingerprint=([0-9A-F:]+)/.exec(out.stdout)![1].replaceAll(":", "").toLowerCase();
    return { cn: cn.trim(), fp };
  };
  const [one, two] = [await subject(alice.ca), await subject(other.ca)];
  assert(/^ztm mesh CA [0-9a-f]{6}$/.test(one.cn) && /^ztm mesh CA [0-9a-f]{6}$/.test(two.cn));
  assert(one.cn !== two.cn, `${one.cn} vs ${two.cn}`);
  const out = await ztm([
    "join",
    "work",
    `--hub=${hub.address}`,
    `--ca=${join(dir, "ca.crt")}`,
    `--cert=${join(dir, "alice.crt")}`,
    `--key=${join(dir, "alice.key")}`,
    ...agentFlags(agent),
  ]);
  assertEquals(out.code, 1, out.stdout);
  assertEquals(
    out.stderr,
    `ztm join: Certificate "CN=alice" was not issued by the CA "CN=${one.cn}" (SHA-256 fingerprint ${
      one.fp.slice(0, 16)
    }…, the CA certificate given) but by "CN=${two.cn}"\n`,
  );
});

Deno.test("a file that cannot be read or made names the flag that chose it", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const missing = await ztm(["status", "--api-token-file=/nonexistent/token"]);
  assertEquals(missing.code, 1);
  assertEquals(
    missing.stderr,
    'ztm status: The --api-token-file "/nonexistent/token" does not exist\n',
  );
  const dir = await h.tempDir("ztm-files-");
  const token = await ztm([
    "cert",
    "new",
    "bob",
    `--ca-url=${ca.url}`,
    `--dir=${dir}`,
    `--ca-token-file=${dir}`,
  ]);
  assertEquals(token.code, 1);
  assert(
    token.stderr.startsWith(`ztm cert new: Cannot read the --ca-token-file "${dir}": `),
    token.stderr,
  );
  // A database where no file can be made: the agent says which flag to change and exits 1.
  const blocked = join(dir, "not-a-dir");
  Deno.writeTextFileSync(blocked, "");
  const agent = h.spawn("agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${join(blocked, "ztm.db")}`,
  ]);
  const failed = await agent.waitForLog((l) => l.msg === "start failed", 20_000);
  assertEquals((await agent.status).code, 1);
  assert(
    String(failed.err).startsWith(`Cannot use ${join(blocked, "ztm.db")} (--database): `),
    agent.tail(),
  );
});

Deno.test("ztm installed from the checkout with deno install runs from any folder", async () => {
  await using h = new Harness();
  const root = await h.tempDir("ztm-install-");
  // The README's command, with --root so the test does not touch ~/.deno.
  await run(Deno.execPath(), [
    "install",
    "--global",
    "--allow-all",
    "--name",
    "ztm",
    "--config",
    "deno.json",
    "--root",
    root,
    "cli/main.ts",
  ], { cwd: ROOT });
  const elsewhere = await h.tempDir("ztm-elsewhere-");
  const ca = await h.startCa();
  const path = `${join(root, "bin")}:${dirname(Deno.execPath())}:${Deno.env.get("PATH")}`;
  const child = await new Deno.Command("ztm", {
    args: ["cert", "new", "carol", `--ca-url=${ca.url}`],
    cwd: elsewhere,
    env: { PATH: path },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(child.stdout) + new TextDecoder().decode(child.stderr);
  assertEquals(child.code, 0, text);
  for (const f of ["carol.key", "carol.crt", "ca.crt"]) {
    assert(Deno.statSync(join(elsewhere, f)).isFile, `${f} written where ztm ran`);
  }
  assertEquals(Deno.statSync(join(elsewhere, "carol.key")).mode! & 0o777, 0o600);
});
