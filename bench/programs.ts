/**
 * Outside programs the benchmark uses as baselines (sshd, ssh, iperf3): where
 * to find them, and how to run one in the background as a harness `Proc`
 * (its output kept for error messages, stopped with SIGTERM then SIGKILL).
 *
 * The benchmark never installs anything: a missing program is reported by
 * the caller, and its baseline skipped.
 */
import { Proc } from "../tests/fixtures/harness.ts";

/** The first of `names` found as an executable file on PATH or in /usr/sbin, /sbin; else undefined. */
export function findProgram(...names: string[]): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const name of names) {
    for (const dir of dirs) {
      if (!dir) continue;
      try {
        const info = Deno.statSync(`${dir}/${name}`);
        if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return `${dir}/${name}`;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

/** Starts `path args...` with piped output; the caller stops it (`Proc.stop`). */
export function startProgram(name: string, path: string, args: string[]): Proc {
  const child = new Deno.Command(path, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Proc(name, child);
}

/**
 * Waits until `proc` has printed a line matching `pattern`; throws with its
 * output if it exits first or `timeoutMs` passes.
 */
export async function waitForLine(
  proc: Proc,
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const hit = proc.raw.find((l) => pattern.test(l));
    if (hit !== undefined) return hit;
    if (proc.exited) throw new Error(`${proc.name} exited:\n${proc.tail()}`);
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name} did not print ${pattern} within ${timeoutMs} ms:\n${proc.tail()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
