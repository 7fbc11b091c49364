/**
 * `ztm hub`: runs a hub from the command line.
 *
 * @module
 */
import { type CommandSpec, httpUrl, parseCommandLine } from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { runUntilSignal } from "@ztm/shared/run";
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
  const log = new Logger("hub");
  await runUntilSignal(log, () =>
    startHub({
      caUrl: httpUrl(flags.address("ca")),
      listen: flags.address("listen"),
      dataListen: flags.string("data-listen") === "off" ? undefined : flags.address("data-listen"),
      dataAdvertise: flags.integer("data-advertise") || undefined,
      hosts: flags.addresses("names").map((a) => a.hostname),
      dataDir: flags.path("data-dir")!,
      caTokenFile: flags.path("ca-token-file")!,
      limits: {
        maxSessions: flags.integer("max-sessions"),
        maxStreamsPerSession: flags.integer("max-streams"),
        openTimeoutMs: Math.max(1, flags.integer("open-timeout")) * 1000,
      },
      log,
    }));
}

if (import.meta.main) await main(Deno.args);
