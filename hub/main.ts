/**
 * `ztm hub`: runs a hub from the command line; published as `@ztm/hub/main`, so
 * `deno run -A jsr:@ztm/hub/main` runs it too.
 *
 * @module
 */
import {
  applyLogFlags,
  type CommandSpec,
  httpUrl,
  LOG_FLAGS,
  parseCommandLine,
} from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { withMetricsServer } from "@ztm/shared/metrics";
import { runUntilSignal } from "@ztm/shared/run";
import { HUB_LIST_EVERY_MS } from "./hub_list.ts";
import { HubMetrics } from "./metrics.ts";
import { DEFAULT_LIMITS, startHub } from "./mod.ts";

/** Flags of `ztm hub`. */
export const HUB_COMMAND: CommandSpec = {
  name: "ztm hub",
  summary:
    "Runs a hub: agents dial it over HTTP/2 with mutual TLS and it relays tunnels between them.",
  flags: [
    { name: "ca", kind: "address", help: "HOST:PORT of the mesh CA (required)" },
    { name: "listen", kind: "address", default: "0.0.0.0:8888", help: "address agents connect to" },
    {
      name: "data-listen",
      kind: "string",
      default: "0.0.0.0:8889",
      help: "address of the plain TCP data port that splices tunnels, or off",
    },
    {
      name: "data-advertise",
      kind: "integer",
      default: "0",
      help: "data port agents are told to dial, when a port forward changes it (0: the bound port)",
    },
    {
      name: "enroll-listen",
      kind: "string",
      default: "auto",
      help:
        "address of the enrollment port, where invite holders send their certificate request (auto: the --listen address, port + 2), or off",
    },
    {
      name: "metrics-listen",
      kind: "address-or-off",
      default: "off",
      help: "address of GET /metrics for Prometheus (no token: keep it private), or off",
    },
    {
      name: "names",
      kind: "addresses",
      default: "localhost",
      help: "host[:port],... agents dial; the hosts go into the hub certificate",
    },
    {
      name: "data-dir",
      kind: "path",
      default: "~/.ztm-hub",
      help: "where the hub keeps its key, certificate and CRL",
    },
    {
      name: "ca-token-file",
      kind: "path",
      default: "~/ztm-ca.db.token",
      help: "the CA's token file",
    },
    {
      name: "hub-list-every",
      kind: "integer",
      default: String(HUB_LIST_EVERY_MS / 1000),
      help: "seconds between asking the CA for the mesh's hub list, which agents are told",
    },
    {
      name: "max-sessions",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxSessions),
      help: "session cap (429 beyond)",
    },
    {
      name: "open-timeout",
      kind: "integer",
      default: String(DEFAULT_LIMITS.openTimeoutMs / 1000),
      help: "seconds a tunnel may take to be accepted and attached (also a data ticket's lifetime)",
    },
    {
      name: "max-streams",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxStreamsPerSession),
      help: "concurrent streams per session",
    },
    {
      name: "max-sessions-per-user",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxSessionsPerUser),
      help: "sessions one user's certificates may hold at once (429 beyond)",
    },
    {
      name: "max-endpoints-per-user",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxEndpointsPerUser),
      help: "endpoints one user may have listed, offline ones until purged (429 beyond)",
    },
    {
      name: "max-services",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxServicesPerEndpoint),
      help: "services one endpoint may publish (429 beyond)",
    },
    {
      name: "max-service-bytes",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxServiceBytesPerEndpoint),
      help: "bytes (JSON) of one endpoint's services with their user lists (429 beyond)",
    },
    {
      name: "max-control-streams",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxControlStreamsPerSession),
      help: "control streams open at once on one session (429 beyond)",
    },
    {
      name: "max-pending-per-address",
      kind: "integer",
      default: String(DEFAULT_LIMITS.maxPendingPerAddress),
      help: "control-port connections one address may hold before admission (closed beyond)",
    },
    ...LOG_FLAGS,
  ],
  examples: [
    "ztm hub --ca=localhost:9999",
    "ztm hub --ca=localhost:9999 --listen=0.0.0.0:1234 --names=hub.example.com",
  ],
};

/**
 * Runs `ztm hub` with `args`: parses the flags (exiting 2 on a bad one),
 * starts the hub, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(HUB_COMMAND, args);
  applyLogFlags(flags);
  const log = new Logger("hub");
  const metricsAddr = flags.addressOrOff("metrics-listen");
  const metrics = metricsAddr ? new HubMetrics() : undefined;
  const enrollFlag = flags.string("enroll-listen") ?? "auto";
  const enrollListen = enrollFlag === "off"
    ? undefined
    : enrollFlag === "auto"
    ? "auto" as const
    : flags.address("enroll-listen");
  await runUntilSignal(log, async () => {
    const hub = await startHub({
      caUrl: httpUrl(flags.address("ca")),
      listen: flags.address("listen"),
      dataListen: flags.string("data-listen") === "off" ? undefined : flags.address("data-listen"),
      dataAdvertise: flags.integer("data-advertise") || undefined,
      hosts: flags.addresses("names").map((a) => a.hostname),
      advertise: flags.addresses("names"),
      enrollListen,
      dataDir: flags.path("data-dir")!,
      caTokenFile: flags.path("ca-token-file")!,
      hubListEveryMs: Math.max(1, flags.integer("hub-list-every")) * 1000,
      limits: {
        maxSessions: flags.integer("max-sessions"),
        maxStreamsPerSession: flags.integer("max-streams"),
        maxSessionsPerUser: Math.max(1, flags.integer("max-sessions-per-user")),
        maxEndpointsPerUser: Math.max(1, flags.integer("max-endpoints-per-user")),
        maxServicesPerEndpoint: Math.max(0, flags.integer("max-services")),
        maxServiceBytesPerEndpoint: Math.max(2, flags.integer("max-service-bytes")),
        maxControlStreamsPerSession: Math.max(1, flags.integer("max-control-streams")),
        maxPendingPerAddress: Math.max(1, flags.integer("max-pending-per-address")),
        openTimeoutMs: Math.max(1, flags.integer("open-timeout")) * 1000,
      },
      log,
      metrics,
    });
    if (!metrics || !metricsAddr) return hub;
    return withMetricsServer(hub, metricsAddr, metrics.metrics, log);
  });
}

if (import.meta.main) await main(Deno.args);
