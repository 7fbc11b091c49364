/**
 * One process per state database: a component takes an exclusive lock on
 * `<database>.lock` before it opens its database, and a second process on the
 * same file refuses to start, naming the first one's pid.
 *
 * The lock is the kernel's advisory file lock (`flock`), so it dies with its
 * process: a crash or `kill -9` never leaves a stale lock behind. The file
 * itself stays (removing it would race a starting process) and holds the pid.
 *
 * @example
 * ```ts
 * const lock = lockState(expandHome("~/ztm.db"), "agent"); // throws Conflict if taken
 * lock.release();
 * ```
 */
import { dirname } from "node:path";
import { sharedError } from "./errors.ts";
import { ensurePrivateDir } from "./files.ts";

/** A held lock. */
export interface StateLock {
  /** The lock file. */
  path: string;
  /** Lets the next process in; idempotent. */
  release(): void;
}

/** `~/ztm.db` for a path under the home directory, for messages. */
export function displayPath(path: string): string {
  const home = Deno.env.get("HOME");
  return home && path.startsWith(home + "/") ? "~" + path.slice(home.length) : path;
}

/**
 * Locks `database` for this process (`what` names the component in the
 * refusal, `flag` the flag that chose the file). Throws `Conflict` (`state_in_use`): "another agent (pid N) is
 * using ~/ztm.db". Not for concurrent use on one path within a process either:
 * the second call throws too.
 */
export function lockState(database: string, what: string, flag = "--database"): StateLock {
  const path = `${database}.lock`;
  let file: Deno.FsFile;
  try {
    ensurePrivateDir(dirname(path));
    file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
  } catch (err) {
    throw new Error(
      `Cannot use ${displayPath(database)} (${flag}): cannot create ${path}: ${
        (err as Error).message
      }`,
    );
  }
  let locked = false;
  try {
    locked = file.tryLockSync(true);
  } catch (err) {
    file.close();
    throw err;
  }
  if (!locked) {
    file.close();
    const pid = (Deno.readTextFileSync(path).trim().match(/^\d+$/) ?? ["?"])[0];
    throw sharedError(
      "state_in_use",
      `another ${what} (pid ${pid}) is using ${displayPath(database)}; ` +
        `stop it first, or give this one its own ${flag}`,
    );
  }
  file.truncateSync(0);
  file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      try {
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}
