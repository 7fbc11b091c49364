/**
 * The iperf3 figure: an `iperf3 -s` server on a free 127.0.0.1 port, and
 * `iperf3 -c` runs that send a fixed number of bytes over one connection to
 * it, directly or through a tunnel's local port.
 *
 * iperf3 opens a control connection and then a data connection to the same
 * port, so a tunnel must carry both (a port mapping and `ssh -L` do).
 */
import type { Proc } from "../tests/fixtures/harness.ts";
import { runBounded } from "./bounded_run.ts";
import { freePort, LOOPBACK } from "./ports.ts";
import { findProgram, startProgram, waitForLine } from "./programs.ts";

/** The path of iperf3, or undefined. */
export function iperfPath(): string | undefined {
  return findProgram("iperf3");
}

/** Starts `iperf3 -s` on a free loopback port; the caller stops the returned `Proc`. */
export async function startIperfServer(path: string): Promise<{ port: number; proc: Proc }> {
  for (let attempt = 0;; attempt++) {
    const port = freePort();
    const proc = startProgram("iperf3 -s", path, [
      "-s",
      "--forceflush",
      "-B",
      LOOPBACK,
      "-p",
      String(port),
    ]);
    try {
      await waitForLine(proc, /Server listening on/);
      return { port, proc };
    } catch (err) {
      await proc.stop();
      if (attempt >= 4) throw err; // the port was taken between picking and binding: retry
    }
  }
}

/**
 * Runs `iperf3 -c` sending `bytes` to 127.0.0.1:`port`; returns MB/s as the
 * receiver counted it and the epoch-ms span. Throws with iperf3's error, or
 * after `timeoutMs` (the client is killed).
 */
export async function runIperfClient(
  path: string,
  port: number,
  bytes: number,
  timeoutMs: number,
): Promise<{ MBps: number; startMs: number; endMs: number }> {
  const startMs = Date.now();
  const out = await runBounded(
    path,
    ["-c", LOOPBACK, "-p", String(port), "-n", String(bytes), "-J", "--connect-timeout", "5000"],
    timeoutMs,
  );
  const endMs = Date.now();
  const text = new TextDecoder().decode(out.stdout);
  // deno-lint-ignore no-explicit-any
  let report: any;
  try {
    report = JSON.parse(text);
  } catch {
    throw new Error(
      `iperf3 -c exited ${out.code}${
        out.signal ? ` (${out.signal}, after ${timeoutMs} ms)` : ""
      }: ${new TextDecoder().decode(out.stderr).trim() || text.slice(0, 300)}`,
    );
  }
  if (report.error) throw new Error(`iperf3 -c: ${report.error}`);
  const bps = Number(report.end?.sum_received?.bits_per_second);
  if (!(bps > 0)) throw new Error("iperf3 -c reported no received rate");
  return { MBps: bps / 8 / 1e6, startMs, endMs };
}
