/**
 * `ztm ca|hub|agent|start`: runs a component with its own flags and `--help`,
 * exactly as its entry point does (`ca/main.ts`, `hub/main.ts`,
 * `agent/main.ts`, `cli/start.ts`), loaded only when asked for so client
 * commands stay quick to start.
 */

import { VERSION } from "@ztm/shared/version";

/** Runs a component with its arguments until it is stopped (it exits the process itself). */
export type ComponentMain = (args: string[]) => Promise<void>;

/** The components, each with a one-line summary for `ztm --help`. */
export const COMPONENTS: Record<string, { summary: string; main: () => Promise<ComponentMain> }> = {
  ca: {
    summary: "run the certificate authority (REST API on 127.0.0.1:9999)",
    main: async () => (await import("@ztm/ca/main")).main,
  },
  hub: {
    summary: "run a hub (agents dial 0.0.0.0:8888; data port 8889)",
    main: () => Promise.resolve(runHubProcess),
  },
  agent: {
    summary: "run this endpoint's agent (API on 127.0.0.1:7777)",
    main: async () => (await import("@ztm/agent/main")).main,
  },
  start: {
    summary: "run a CA, a hub and an agent here, joined to a local mesh as root",
    main: async () => (await import("./start.ts")).main,
  },
};

/**
 * `hub/main.ts` starts a hub only when it is the main module; until it exports
 * `main(args)` as the other entry points do (then the entry above becomes
 * `async () => (await import("@ztm/hub/main")).main`), `ztm hub` runs it as a
 * child process with the same arguments, passes SIGINT and SIGTERM on, and
 * exits with its status. The parent loads none of the hub's modules, so it
 * costs one idle Deno process. (A `deno compile`d ztm cannot start a child
 * this way; it needs that export.)
 */
async function runHubProcess(args: string[]): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--max-semi-space-size=2",
      hubEntry(),
      ...args,
    ],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch { /* it has already exited */ }
    });
  }
  const status = await child.status;
  Deno.exit(status.code); // 128 + the signal's number when a signal ended it
}

/**
 * The hub's entry module: this checkout's `hub/main.ts`, or, when ztm itself
 * runs from JSR, the same release of `jsr:@ztm/hub` (the workspace's import
 * map is not there to resolve `@ztm/hub` for a child process).
 */
export function hubEntry(): string {
  return import.meta.url.startsWith("file:")
    ? import.meta.resolve("@ztm/hub/main")
    : `jsr:@ztm/hub@${VERSION}/main`;
}
