/**
 * `ztm ca`: runs the certificate authority from the command line.
 *
 * @module
 */
import { applyLogFlags, type CommandSpec, LOG_FLAGS, parseCommandLine } from "@ztm/shared/flags";
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
    ...LOG_FLAGS,
  ],
  examples: [
    "ztm ca",
    "ztm ca --listen=127.0.0.1:1234 --database=~/my-ca.db",
  ],
};

/**
 * Runs `ztm ca` with `args`: parses the flags (exiting 2 on a bad one), starts
 * the CA, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(CA_COMMAND, args);
  applyLogFlags(flags);
  const log = new Logger("ca");
  try {
    lockState(flags.path("database")!, "CA");
    const ca = await startCa({
      listen: flags.address("listen"),
      database: flags.path("database")!,
      tokenFile: flags.path("token-file"),
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
