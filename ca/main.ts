/**
 * `ztm ca`: runs the certificate authority from the command line; published as
 * `@ztm/ca/main`, so `deno run -A jsr:@ztm/ca/main` runs it too.
 *
 * @module
 */
import {
  applyLogFlags,
  type CommandSpec,
  LOG_FLAGS,
  parseCommandLine,
  usage,
} from "@ztm/shared/flags";
import { errText, Logger } from "@ztm/shared/log";
import { lockState } from "@ztm/shared/state_lock";
import { startCa } from "./mod.ts";

/** Flags of `ztm ca`. */
export const CA_COMMAND: CommandSpec = {
  name: "ztm ca",
  summary:
    "Runs the mesh's certificate authority: issues and revokes certificates (REST on --listen).",
  flags: [
    { name: "listen", kind: "address", default: "127.0.0.1:9999", help: "address of the REST API" },
    {
      name: "database",
      kind: "path",
      default: "~/ztm-ca.db",
      help: "SQLite file holding the CA (0600)",
    },
    {
      name: "token-file",
      kind: "path",
      optional: true,
      help:
        "token for the hub-certificate route (default: <database>.token, made 0600 on first start)",
    },
    {
      name: "cert-lifetime",
      kind: "string",
      default: "365d",
      help:
        "lifetime of the user certificates it issues: a number with s, m, h or d (60s, 12h, 90d); hubs end a session when its certificate expires",
    },
    {
      name: "hub-cert-lifetime",
      kind: "string",
      default: "365d",
      help:
        "lifetime of the hub certificates it issues (same form); hubs renew theirs at two thirds of it",
    },
    ...LOG_FLAGS,
  ],
  examples: [
    "ztm ca",
    "ztm ca --listen=127.0.0.1:1234 --database=~/my-ca.db",
    "ztm ca --cert-lifetime=12h",
  ],
};

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `60s`, `90m`, `12h`, `365d` in ms, from 60 s to 3650 days; undefined for anything else. */
export function parseLifetime(text: string): number | undefined {
  const m = text.match(/^(\d{1,7})([smhd])$/);
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2]];
  return ms >= 60_000 && ms <= 3650 * UNIT_MS.d ? ms : undefined;
}

/**
 * Runs `ztm ca` with `args`: parses the flags (exiting 2 on a bad one), starts
 * the CA, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(CA_COMMAND, args);
  applyLogFlags(flags);
  const certLifetimeMs = parseLifetime(flags.string("cert-lifetime") ?? "365d");
  if (certLifetimeMs === undefined) {
    console.error(
      `${CA_COMMAND.name}: --cert-lifetime must be a number with s, m, h or d (60s, 12h, 90d) from 60s to 3650d, got "${
        flags.string("cert-lifetime")
      }"\n\n${usage(CA_COMMAND)}`,
    );
    Deno.exit(2);
  }
  const hubCertLifetimeMs = parseLifetime(flags.string("hub-cert-lifetime") ?? "365d");
  if (hubCertLifetimeMs === undefined) {
    console.error(
      `${CA_COMMAND.name}: --hub-cert-lifetime must be a number with s, m, h or d (60s, 12h, 90d) from 60s to 3650d, got "${
        flags.string("hub-cert-lifetime")
      }"\n\n${usage(CA_COMMAND)}`,
    );
    Deno.exit(2);
  }
  const log = new Logger("ca");
  try {
    lockState(flags.path("database")!, "CA");
    const ca = await startCa({
      listen: flags.address("listen"),
      database: flags.path("database")!,
      tokenFile: flags.path("token-file"),
      certLifetimeMs,
      hubCertLifetimeMs,
      log,
    });
    const stop = async () => {
      log.info("stopping");
      await ca.close();
      Deno.exit(0);
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  } catch (err) {
    log.error("start failed", { err: errText(err) });
    Deno.exit(1);
  }
}

if (import.meta.main) await main(Deno.args);
