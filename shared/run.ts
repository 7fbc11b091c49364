/**
 * The life of a component process: start it, log a start failure and exit
 * 1, and on SIGINT/SIGTERM close it and exit 0.
 */
import { errText, type Logger } from "./log.ts";

/** How long a signal during the start waits for it to finish before the process exits. */
const STOP_WAIT_MS = 5_000;

/** Starts `start()`, then closes what it returned on SIGINT or SIGTERM and exits. */
export async function runUntilSignal(
  log: Logger,
  start: () => Promise<{ close(): Promise<void> }>,
): Promise<void> {
  // Listening for signals from the start's first await on (no signal is delivered before it): a
  // component may answer on its port before its start has finished (a hub announces itself to
  // the CA after it listens), and a SIGTERM then must still stop it cleanly instead of killing it.
  const starting: Promise<{ close(): Promise<void> } | undefined> = start().catch((err) => {
    log.error("start failed", { err: errText(err) });
    Deno.exit(1);
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log.info("stopping");
    try {
      // A start still under way (a hub waiting for its CA) gets a few seconds to finish.
      const running = await Promise.race([
        starting,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), STOP_WAIT_MS)),
      ]);
      await running?.close();
    } catch (err) {
      log.error("stop failed", { err: errText(err) });
    }
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await starting;
}
