/**
 * The benchmark's measurements, each one call against one local port: bulk
 * on one and on several connections (own load generator), bulk with iperf3,
 * 64-byte round trips, and new connections per second, sequential and
 * parallel. Each is bounded in time: a path slower than 10 MB/s, or a
 * connection slower than ~20 ms on average, fails the measurement rather
 * than stalling the bench.
 *
 * The figures come back with the span they were measured in, so process
 * usage can be read for exactly that span (`ProcSampler.usage`).
 */
import { runIperfClient } from "./iperf.ts";
import { type LoadResult, type LoadSpec, runLoad } from "./load.ts";

/** The measurements, in the order each run makes them. */
export const MEASUREMENTS = ["bulk", "iperf3", "parallel", "rtt", "connSeq", "connPar"] as const;
/** One measurement. */
export type Measurement = typeof MEASUREMENTS[number];

/** Sizes of the measurements. */
export interface MeasureConfig {
  bytes: number;
  streams: number;
  rtt: number;
  rttWarmup: number;
  connects: number;
  parallelConnects: number;
  concurrency: number;
  /** Path of iperf3, needed only for the `iperf3` measurement. */
  iperf?: string;
}

/** What one measurement yields: its figures and the span (epoch ms) it was measured in. */
export interface Measured {
  figures: Record<string, number>;
  startMs: number;
  endMs: number;
  /** CPU of the load process, % of a core (not for iperf3). */
  loadCpuPct?: number;
  /** Connections that failed (connect measurements). */
  failed?: number;
  firstError?: string;
}

const bulkTimeout = (bytes: number) => 30_000 + Math.ceil(bytes / 10e6) * 1000; // floor: 10 MB/s
const connectTimeout = (n: number) => 30_000 + n * 20;

function fromLoad(r: LoadResult, keys: (keyof LoadResult)[]): Measured {
  const figures: Record<string, number> = {};
  for (const k of keys) if (typeof r[k] === "number") figures[k] = r[k] as number;
  return {
    figures,
    startMs: r.startMs,
    endMs: r.endMs,
    loadCpuPct: r.loadCpuPct,
    failed: r.failed,
    firstError: r.firstError,
  };
}

/**
 * Runs `m` against 127.0.0.1:`port` (the way in to the echo server, or to
 * iperf3 -s for `iperf3`). Throws when the load fails or times out.
 */
export async function measure(m: Measurement, port: number, c: MeasureConfig): Promise<Measured> {
  const load = (spec: LoadSpec, timeoutMs: number, keys: (keyof LoadResult)[]) =>
    runLoad(spec, timeoutMs).then((r) => fromLoad(r, keys));
  switch (m) {
    case "bulk":
      return await load(
        { mode: "bulk", port, bytes: c.bytes, connections: 1 },
        bulkTimeout(c.bytes),
        ["MBps"],
      );
    case "iperf3": {
      if (!c.iperf) throw new Error("iperf3 is not installed");
      const r = await runIperfClient(c.iperf, port, c.bytes, bulkTimeout(c.bytes));
      return { figures: { MBps: r.MBps }, startMs: r.startMs, endMs: r.endMs };
    }
    case "parallel":
      return await load(
        { mode: "bulk", port, bytes: c.bytes, connections: c.streams },
        bulkTimeout(c.bytes),
        ["MBps"],
      );
    case "rtt":
      return await load(
        { mode: "rtt", port, count: c.rtt, warmup: c.rttWarmup, size: 64 },
        60_000,
        ["p50Us", "p99Us", "meanUs"],
      );
    case "connSeq":
      return await load(
        { mode: "connect", port, count: c.connects, concurrency: 1 },
        connectTimeout(c.connects),
        ["perSecond"],
      );
    case "connPar":
      return await load(
        { mode: "connect", port, count: c.parallelConnects, concurrency: c.concurrency },
        connectTimeout(c.parallelConnects),
        ["perSecond"],
      );
  }
}

/** Untimed traffic through `port` so every process on the path has compiled its hot code. */
export async function warmUp(port: number): Promise<void> {
  await runLoad({ mode: "bulk", port, bytes: 64 << 20, connections: 2 }, 60_000);
  await runLoad({ mode: "connect", port, count: 100, concurrency: 4 }, 60_000);
  await runLoad({ mode: "rtt", port, count: 200, warmup: 0, size: 64 }, 60_000);
}
