/**
 * State on disk is private: every file the CA, the hub, the agent and
 * `start` write — databases with their WAL and shared-memory files, tokens,
 * keys, certificates, the CRL — is 0600, and every directory they create is
 * 0700 (so in particular not world-writable). Each component is pointed at a
 * directory that does not exist yet, so it creates the whole path itself,
 * under the usual umask 022.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import {
  api,
  eventually,
  Harness,
  issueUser,
  joinMesh,
  rememberAgentToken,
} from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";

/** Every file and directory under `dir` (not `dir` itself) with its permission bits. */
async function modes(dir: string): Promise<{ path: string; dir: boolean; mode: number }[]> {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  const walk = async (at: string) => {
    for await (const e of Deno.readDir(at)) {
      const path = join(at, e.name);
      // A file written atomically (temp name, then rename) can vanish between the listing and
      // the lstat; it was never left behind, so it is not one of the files under test.
      const info = await Deno.lstat(path).catch((err) => {
        if (err instanceof Deno.errors.NotFound) return null;
        throw err;
      });
      if (!info) continue;
      out.push({ path, dir: e.isDirectory, mode: info.mode! & 0o777 });
      if (e.isDirectory) await walk(path);
    }
  };
  await walk(dir);
  return out;
}

/** Asserts 0600 files and 0700 directories under `root`, and that `expected` files exist. */
async function assertPrivate(root: string, expected: string[]): Promise<string[]> {
  const found = await modes(root);
  const names = found.map((f) => relative(root, f.path));
  for (const e of expected) assert.ok(names.includes(e), `${e} missing; found ${names.join(", ")}`);
  for (const f of found) {
    const want = f.dir ? 0o700 : 0o600;
    assert.equal(
      f.mode,
      want,
      `${relative(root, f.path)} is ${f.mode.toString(8)}, not ${want.toString(8)}`,
    );
  }
  return names;
}

Deno.test("CA, hub and agent create their state directories 0700 and every file 0600", async () => {
  await using h = new Harness();
  const root = await h.tempDir("ztm-files-");
  const ca = await h.startCa({
    dir: join(root, "ca"),
    args: [`--database=${root}/ca/state/ca.db`],
  });
  const database = join(root, "ca", "state", "ca.db");
  const hubDir = join(root, "hub", "state");
  const hub = await h.startHub({ url: ca.url, database }, { dir: hubDir });
  const agent = await h.spawnService("agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${root}/agent/state/agent.db`,
  ]);
  rememberAgentToken(
    agent.url,
    Deno.readTextFileSync(join(root, "agent", "state", "agent.db.token")).trim(),
  );
  const alice = await issueUser(ca.url, "alice");
  await joinMesh(agent.url, "test", alice, hub.address, "alice-ep");
  await eventually(
    async () => (await api(agent.url, "GET", "/api/meshes/test")).body?.status?.connected,
    15_000,
    "alice connected",
  );
  // A revocation makes the hub write its CRL file too.
  await issueUser(ca.url, "gone");
  await fetch(`${ca.url}/api/certificates/gone`, { method: "DELETE" }).then((r) =>
    r.body?.cancel()
  );
  await eventually(
    async () => (await Deno.stat(join(hubDir, "crl.pem")).catch(() => null)) !== null,
    10_000,
    "the hub's CRL file",
  );

  const names = await assertPrivate(root, [
    "ca/state/ca.db",
    "ca/state/ca.db.token",
    "hub/state/hub.key",
    "hub/state/hub.crt",
    "hub/state/ca.crt",
    "hub/state/crl.pem",
    "agent/state/agent.db",
    "agent/state/agent.db.token",
  ]);
  // The write-ahead logs hold the same secrets as the databases (the CA key, the agent's key).
  assert.ok(names.some((n) => n.endsWith("ca.db-wal")), names.join(", "));
  assert.ok(names.some((n) => n.endsWith("agent.db-wal")), names.join(", "));
});

Deno.test("start creates its data directory 0700 and every file in it 0600", async () => {
  await using h = new Harness();
  const root = await h.tempDir("ztm-files-start-");
  const dir = join(root, "new", ".ztm");
  const proc = h.spawn("start", "cli/start.ts", [
    `--data-dir=${dir}`,
    "--ca-listen=127.0.0.1:0",
    `--hub-listen=127.0.0.1:${await freePort()}`,
    "--data-listen=127.0.0.1:0",
    "--agent-listen=127.0.0.1:0",
  ]);
  await eventually(() => proc.raw.find((l) => l.includes("agent API")), 20_000, "the banner");
  await assertPrivate(root, ["new", "new/.ztm", "new/.ztm/root.key", "new/.ztm/hub/hub.key"]);
});
