/**
 * Runs a program to completion with a deadline: its output is collected, and
 * it is killed (SIGKILL) if it outlives `killAfterMs`. No imports, so the load
 * generator process can use it with its narrow permissions.
 */

/** Runs `path args...` with piped output; kills it after `killAfterMs`. */
export async function runBounded(
  path: string,
  args: string[],
  killAfterMs: number,
  env?: Record<string, string>,
): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(path, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, killAfterMs);
  return await child.output().finally(() => clearTimeout(killer));
}
