/**
 * What the figures were measured on and with: the machine (cores, CPU model,
 * kernel, Deno) and the source (commit, and whether the data path's folders
 * had uncommitted changes), so a figure can be traced to both.
 */

/** The machine the bench runs on. */
export interface Machine {
  cpus: number;
  cpu: string;
  kernel: string;
  deno: string;
}

/** Describes this machine from `navigator`, `/proc/cpuinfo` and Deno. */
export function describeMachine(): Machine {
  let cpuinfo = "";
  try {
    cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  } catch { /* not Linux: "unknown" below */ }
  return {
    cpus: navigator.hardwareConcurrency,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown",
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
  };
}

/**
 * `commit abc1234`, plus a remark when hub/, agent/ or shared/ hold
 * uncommitted changes; "no git" where git or the repository is missing.
 */
export async function sourceState(root: string): Promise<string> {
  const git = (args: string[]) =>
    new Deno.Command("git", { args: ["-C", root, ...args], stdin: "null", stderr: "null" })
      .output()
      .then((o) => (o.success ? new TextDecoder().decode(o.stdout).trim() : ""));
  try {
    const head = await git(["rev-parse", "--short", "HEAD"]);
    if (!head) return "no git";
    const dirty = await git(["status", "--porcelain", "--", "hub", "agent", "shared"]);
    return `commit ${head}${dirty ? " + uncommitted changes in hub/agent/shared" : ""}`;
  } catch {
    return "no git";
  }
}
