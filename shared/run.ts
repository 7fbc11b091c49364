/**
 * The life of a component process: start it, log a start failure and exit
 * 1, and on SIGINT/SIGTERM close it and exit 0.
 */
import { errText, type Logger } from "./log.ts";

/** Starts `start()`, then closes what it returned on SIGINT or SIGTERM and exits. */
export async function runUntilSignal(
  log: Logger,
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  let running: { close(): Promise<void> };
  try {
    running = await start();
  } catch (err) {
    log.error("start failed", { err: errText(err) });
    Deno.exit(1);
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log.info("stopping");
    try {
      await running.close();
    } catch (err) {
      log.error("stop failed", { err: errText(err) });
    }
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
