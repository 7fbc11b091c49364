/**
 * Secret files on a real file system: modes from the first byte, atomic
 * replacement, and the token made once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ensurePrivateDir,
  loadOrCreateToken,
  readTextIfExists,
  touchPrivateFile,
  writeSecretFile,
} from "./files.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";

const modeOf = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

Deno.test("writeSecretFile writes 0600 in a new 0700 directory and replaces atomically", async () => {
  await using dir = await tempDir("ztm-files-");
  const path = join(dir.path, "state", "key.pem");
  writeSecretFile(path, "one");
  assert.equal(await Deno.readTextFile(path), "one");
  assert.equal(await modeOf(path), 0o600);
  assert.equal(await modeOf(join(dir.path, "state")), 0o700);

  await Deno.chmod(path, 0o644);
  writeSecretFile(path, "two");
  assert.equal(await Deno.readTextFile(path), "two");
  assert.equal(await modeOf(path), 0o600);
  // No temp file is left beside it.
  const names = [...Deno.readDirSync(join(dir.path, "state"))].map((e) => e.name);
  assert.deepEqual(names, ["key.pem"]);
});

Deno.test("ensurePrivateDir leaves an existing directory's mode alone", async () => {
  await using dir = await tempDir("ztm-files-");
  await Deno.chmod(dir.path, 0o755);
  ensurePrivateDir(dir.path);
  assert.equal(await modeOf(dir.path), 0o755);
});

Deno.test("loadOrCreateToken makes a 256-bit hex token 0600 once and then reuses it", async () => {
  await using dir = await tempDir("ztm-files-");
  const path = join(dir.path, "ca.db.token");
  const token = loadOrCreateToken(path);
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.equal(await Deno.readTextFile(path), token + "\n");
  assert.equal(await modeOf(path), 0o600);
  assert.equal(loadOrCreateToken(path), token);
  assert.notEqual(loadOrCreateToken(join(dir.path, "other.token")), token);
});

Deno.test("loadOrCreateToken keeps a token the user wrote and refuses an unusable one", async () => {
  await using dir = await tempDir("ztm-files-");
  const path = join(dir.path, "t");
  await Deno.writeTextFile(path, "  my-own-token-of-some-length \n");
  assert.equal(loadOrCreateToken(path), "my-own-token-of-some-length");
  await Deno.writeTextFile(path, "\n");
  assert.throws(() => loadOrCreateToken(path), /holds no usable token/);
  await Deno.writeTextFile(path, "short");
  assert.throws(() => loadOrCreateToken(path), /holds no usable token/);
});

Deno.test("touchPrivateFile creates an empty 0600 file and never truncates one", async () => {
  await using dir = await tempDir("ztm-files-");
  const path = join(dir.path, "a", "ca.db");
  touchPrivateFile(path);
  assert.equal((await Deno.stat(path)).size, 0);
  assert.equal(await modeOf(path), 0o600);
  await Deno.writeTextFile(path, "data");
  touchPrivateFile(path);
  assert.equal(await Deno.readTextFile(path), "data");
});

Deno.test("readTextIfExists returns undefined only for a missing file", async () => {
  await using dir = await tempDir("ztm-files-");
  assert.equal(readTextIfExists(join(dir.path, "missing")), undefined);
  await Deno.writeTextFile(join(dir.path, "f"), "x");
  assert.equal(readTextIfExists(join(dir.path, "f")), "x");
  assert.throws(() => readTextIfExists(dir.path));
});
