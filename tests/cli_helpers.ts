/**
 * Runs the real `ztm` command line (`deno run -A cli/main.ts …`) as a child
 * process and returns its exit code and output, for the `cli_*` tests.
 *
 * @example
 * ```ts
 * const out = await ztm(["get", "meshes", ...agentFlags(agent)]);
 * assertEquals(out.code, 0);
 * ```
 */
import { join } from "node:path";
import { ROOT } from "./harness.ts";

const DENO_DIR = Deno.env.get("DENO_DIR") ??
  join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME")!, ".cache"), "deno");

/** What one `ztm` run did. */
export interface ZtmRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `ztm …args` from the project root (a command, not a component: it
 * must exit by itself). `env` is added to a clean environment with `HOME`
 * set to `home` (a temp dir by default, so no real token file is read).
 */
export async function ztm(
  args: string[],
  opts: {
    env?: Record<string, string>;
    home?: string;
    cwd?: string;
    deno?: string;
    /** The checkout whose `cli/main.ts` runs (default: this one). */
    root?: string;
  } = {},
): Promise<ZtmRun> {
  const home = opts.home ?? await Deno.makeTempDir({ prefix: "ztm-home-" });
  const root = opts.root ?? ROOT;
  try {
    const out = await new Deno.Command(opts.deno ?? Deno.execPath(), {
      args: ["run", "--allow-all", join(root, "cli/main.ts"), ...args],
      cwd: opts.cwd ?? root,
      clearEnv: true,
      env: {
        HOME: home,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        NO_COLOR: "1",
        DENO_DIR, // the same module cache, whatever HOME is
        ...opts.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  } finally {
    if (opts.home === undefined) await Deno.remove(home, { recursive: true });
  }
}

/** Runs `ztm …args` and returns its stdout; throws with the output unless it exits 0. */
export async function ztmOk(args: string[], opts: Parameters<typeof ztm>[1] = {}): Promise<string> {
  const out = await ztm(args, opts);
  if (out.code !== 0) {
    throw new Error(`ztm ${args.join(" ")} exited ${out.code}:\n${out.stderr}${out.stdout}`);
  }
  return out.stdout;
}

/** Runs `ztm …args --json` and returns the parsed answer; throws unless it exits 0. */
export async function ztmJson(
  args: string[],
  opts: Parameters<typeof ztm>[1] = {},
): Promise<unknown> {
  return JSON.parse(await ztmOk([...args, "--json"], opts));
}

/** `--agent` and `--api-token-file` for an agent started by the harness. */
export function agentFlags(agent: { port: number; database: string }): string[] {
  return [`--agent=127.0.0.1:${agent.port}`, `--api-token-file=${agent.database}.token`];
}
