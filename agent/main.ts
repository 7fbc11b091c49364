/**
 * `ztm agent`: runs an endpoint's agent from the command line; published as
 * `@ztm/agent/main`, so `deno run -A jsr:@ztm/agent/main` runs it too.
 *
 * @module
 */
import { ConfigError, configPath, readConfigFile } from "@ztm/shared/config";
import { applyLogFlags, type CommandSpec, LOG_FLAGS, parseCommandLine } from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { withMetricsServer } from "@ztm/shared/metrics";
import { runUntilSignal } from "@ztm/shared/run";
import { AgentClient } from "./client.ts";
import { applyDeclarations, type DeclaredMesh, readDeclarations } from "./declared.ts";
import { AgentMetrics } from "./metrics.ts";
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
      name: "metrics-listen",
      kind: "address-or-off",
      default: "off",
      help: "address of GET /metrics without the token (keep it on loopback), or off; " +
        "GET /api/metrics with the token always works",
    },
    {
      name: "api-token-file",
      kind: "path",
      optional: true,
      help: "file holding the API token (default: <database>.token, made 0600 on first start)",
    },
    {
      name: "udp-idle",
      kind: "integer",
      default: "60",
      help: "seconds a udp mapping's flow (one per client address) lives without a datagram",
    },
    {
      name: "udp-flows",
      kind: "integer",
      default: "256",
      oldSpellings: ["udp-sessions"],
      help: "most flows (client addresses) one udp mapping keeps; datagrams past it are dropped",
    },
    ...LOG_FLAGS,
  ],
  configTables: ["meshes"],
  examples: [
    "ztm agent",
    "ztm agent --listen=127.0.0.1:1234 --database=~/my-data.db",
    "ztm agent --config=/etc/ztm/agent.toml   # flags, meshes, services and ports (README)",
  ],
};

/** The meshes `--config` declares; exits 2 naming the lines of what is wrong. */
function declaredMeshes(args: string[]): DeclaredMesh[] {
  const path = configPath(args);
  if (path === undefined) return [];
  try {
    const { meshes, problems } = readDeclarations(readConfigFile(path));
    if (problems.length) throw new ConfigError(path, problems);
    return meshes;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`ztm agent: ${err.message}`);
    Deno.exit(2);
  }
}

/**
 * Runs `ztm agent` with `args`: parses the flags (exiting 2 on a bad one), starts
 * it, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(AGENT_COMMAND, args);
  const declared = declaredMeshes(args);
  applyLogFlags(flags);
  const log = new Logger("agent");
  const metricsAddr = flags.addressOrOff("metrics-listen");
  const metrics = new AgentMetrics();
  await runUntilSignal(log, async () => {
    // One database, one agent: a second one would register the same endpoint at the hub.
    lockState(flags.path("database")!, "agent");
    const agent = await startAgent({
      listen: flags.address("listen"),
      database: flags.path("database")!,
      endpointName: flags.string("name"),
      apiTokenFile: flags.path("api-token-file"),
      udpIdleMs: positive(flags.integer("udp-idle"), "--udp-idle") * 1000,
      udpFlows: positive(flags.integer("udp-flows"), "--udp-flows"),
      log,
      metrics,
    });
    // On stdout, for the person who started it; never in the JSON log.
    console.log(`ztm agent: API token in ${agent.tokenFile}`);
    console.log(`ztm agent: dashboard login (works once): ${agent.loginUrl()}`);
    if (declared.length) {
      // Through the agent's own API, as any client; it logs each item and never throws.
      const client = AgentClient.withTokenFile(agent.url, agent.tokenFile);
      void applyDeclarations(client, declared, log);
    }
    if (!metricsAddr) return agent;
    return withMetricsServer(agent, metricsAddr, metrics.metrics, log);
  });
}

if (import.meta.main) await main(Deno.args);

/** `n`, or exit 2 naming the flag when it is not at least 1. */
function positive(n: number | undefined, flag: string): number {
  if (n === undefined || n < 1) {
    console.error(`ztm agent: ${flag} must be at least 1`);
    Deno.exit(2);
  }
  return n;
}
