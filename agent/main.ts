/**
 * `ztm agent`: runs an endpoint's agent from the command line.
 *
 * @module
 */
import { applyLogFlags, type CommandSpec, LOG_FLAGS, parseCommandLine } from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { runUntilSignal } from "@ztm/shared/run";
import { lockState } from "@ztm/shared/state_lock";
import { startAgent } from "./mod.ts";

/** Flags of `ztm agent`. */
export const AGENT_COMMAND: CommandSpec = {
  name: "ztm agent",
  summary:
    "Runs the agent of this endpoint: joins meshes, provides services, maps local ports (API on --listen).",
  flags: [
    {
      name: "listen",
      kind: "address",
      default: "127.0.0.1:7777",
      help: "address of the local API and dashboard",
    },
    {
      name: "database",
      kind: "path",
      default: "~/ztm.db",
      help: "SQLite file holding this agent's state (0600)",
    },
    {
      name: "name",
      kind: "string",
      optional: true,
      help: "endpoint name for joins that give none (default: host name)",
    },
    {
      name: "api-token-file",
      kind: "path",
      optional: true,
      help: "file holding the API token (default: <database>.token, made 0600 on first start)",
    },
    ...LOG_FLAGS,
  ],
  examples: ["ztm agent", "ztm agent --listen=127.0.0.1:1234 --database=~/my-data.db"],
};

/**
 * Runs `ztm agent` with `args`: parses the flags (exiting 2 on a bad one), starts
 * it, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(AGENT_COMMAND, args);
  applyLogFlags(flags);
  const log = new Logger("agent");
  await runUntilSignal(log, async () => {
    // One database, one agent: a second one would register the same endpoint at the hub.
    lockState(flags.path("database")!, "agent");
    const agent = await startAgent({
      listen: flags.address("listen"),
      database: flags.path("database")!,
      endpointName: flags.string("name"),
      apiTokenFile: flags.path("api-token-file"),
      log,
    });
    // On stdout, for the person who started it; never in the JSON log.
    console.log(`ztm agent: API token in ${agent.tokenFile}`);
    console.log(`ztm agent: dashboard login (works once): ${agent.loginUrl()}`);
    return agent;
  });
}

if (import.meta.main) await main(Deno.args);
