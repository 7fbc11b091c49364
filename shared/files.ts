/**
 * Files that hold secrets: created `0600` from the first byte, written
 * atomically (temp file, fsync, rename) so a crash never leaves half a key,
 * and state directories created `0700`.
 */
import { dirname } from "node:path";

/** Creates `dir` (and parents) as `0700` if missing. Existing directories are left as they are. */
export function ensurePrivateDir(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Writes `text` to `path` atomically with mode `0600`. */
export function writeSecretFile(path: string, text: string): void {
  ensurePrivateDir(dirname(path));
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    file.writeSync(new TextEncoder().encode(text));
    file.syncSync();
  } finally {
    file.close();
  }
  Deno.chmodSync(tmp, 0o600);
  Deno.renameSync(tmp, path);
}

/** Reads a text file, or returns undefined when it does not exist. */
export function readTextIfExists(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Returns the token kept in `path`, making a random 256-bit one (hex, `0600`)
 * on first use. Throws if the file exists but is empty.
 */
export function loadOrCreateToken(path: string): string {
  const existing = readTextIfExists(path);
  if (existing !== undefined) {
    const token = existing.trim();
    if (token.length < 16) throw new Error(`Token file "${path}" holds no usable token`);
    return token;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  writeSecretFile(path, token + "\n");
  return token;
}

/** Creates an empty file with mode `0600` if it does not exist, so SQLite inherits the mode. */
export function touchPrivateFile(path: string): void {
  ensurePrivateDir(dirname(path));
  try {
    Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
}
