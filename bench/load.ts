/**
 * The benchmark's load generator, run as its own process (`runLoad`) so a
 * busy orchestrator cannot distort its timing, and so its CPU shows apart.
 * It only dials 127.0.0.1 (its permission says so) and talks to
 * `echo_server.ts`, directly or through a tunnel.
 *
 * Modes, each bounded in count and by `--timeout-ms`:
 * - `bulk`: `--connections` connections each send their share of `--bytes`
 *   in 256 KiB writes to the sink, half-close, and check the sink's byte
 *   count; MB/s (10^6 bytes per second) over all of them, connect to last
 *   answer.
 * - `rtt`: one connection with Nagle off sends `--size`-byte messages and
 *   waits for each echo; `--warmup` round trips, then `--count` timed ones.
 * - `connect`: `--count` times connect, echo one byte, close, from
 *   `--concurrency` workers; connections per second and failures.
 *
 * The result is one JSON line on stdout (`LoadResult`); on failure a line
 * `{"error": "..."}` and exit status 1.
 *
 *   deno run --allow-net=127.0.0.1 bench/load.ts --mode=rtt --port=PORT
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseCommandLine } from "@ztm/shared/flags";
import { runBounded } from "./bounded_run.ts";
import { writeAll } from "./echo_server.ts";
import { LOOPBACK } from "./ports.ts";

const WRITE_BYTES = 256 * 1024;
const SINK = 0x53; // "S"
const ECHO = 0x45; // "E"
/** A single connect + echo that takes longer than this counts as failed. */
const CONNECT_OP_TIMEOUT_MS = 5_000;

/** What to run against 127.0.0.1:`port`. */
export type LoadSpec =
  | { mode: "bulk"; port: number; bytes: number; connections: number }
  | { mode: "rtt"; port: number; count: number; warmup: number; size: number }
  | { mode: "connect"; port: number; count: number; concurrency: number };

/** The figures of one load run; times are epoch milliseconds of the measured span. */
export interface LoadResult {
  mode: LoadSpec["mode"];
  startMs: number;
  endMs: number;
  seconds: number;
  /** CPU of the load process itself over the span, % of a core. */
  loadCpuPct: number;
  /** bulk */
  bytes?: number;
  MBps?: number;
  /** rtt, microseconds */
  p50Us?: number;
  p99Us?: number;
  meanUs?: number;
  /** connect */
  ok?: number;
  failed?: number;
  perSecond?: number;
  firstError?: string;
}

/**
 * Runs `spec` in a fresh load process and returns its result. Throws with the
 * process's message if it fails, and kills it if it outlives `timeoutMs` by 10 s.
 */
export async function runLoad(spec: LoadSpec, timeoutMs: number): Promise<LoadResult> {
  const args = Object.entries(spec).map(([k, v]) => `--${k}=${v}`);
  const out = await runBounded(
    Deno.execPath(),
    [
      "run",
      "--no-prompt",
      `--allow-net=${LOOPBACK}`,
      fileURLToPath(import.meta.url),
      ...args,
      `--timeout-ms=${timeoutMs}`,
    ],
    timeoutMs + 10_000,
    { NO_COLOR: "1" },
  );
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  const last = stdout.split("\n").pop() ?? "";
  let parsed: LoadResult & { error?: string };
  try {
    parsed = JSON.parse(last);
  } catch {
    throw new Error(
      `load ${spec.mode} exited ${out.code} (signal ${out.signal}): ${stderr || stdout}`,
    );
  }
  if (parsed.error !== undefined) throw new Error(`load ${spec.mode}: ${parsed.error}`);
  return parsed;
}

/** CPU seconds (user + system, all threads) this process has used so far. */
function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Progress, for the message when the deadline hits. */
let progress = "";

async function readAllText(conn: Deno.Conn, limit = 1024): Promise<string> {
  const buf = new Uint8Array(limit);
  let len = 0;
  while (len < limit) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) break;
    len += n;
  }
  return new TextDecoder().decode(buf.subarray(0, len));
}

/** Reads exactly `want` bytes into `buf` (reused); throws if the peer closes first. */
async function readExactly(conn: Deno.Conn, buf: Uint8Array, want: number): Promise<void> {
  let got = 0;
  while (got < want) {
    const n = await conn.read(buf.subarray(got, want));
    if (n === null) throw new Error(`Connection closed after ${got} of ${want} echoed bytes`);
    got += n;
  }
}

async function bulkOne(port: number, bytes: number, sent: { n: number }): Promise<void> {
  const chunk = new Uint8Array(WRITE_BYTES);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24; // not all zeros
  const head = chunk.slice();
  head[0] = SINK;
  const conn = await Deno.connect({ hostname: LOOPBACK, port });
  try {
    let mine = 0;
    while (mine < bytes) {
      const n = Math.min(WRITE_BYTES, bytes - mine);
      await writeAll(conn, (mine === 0 ? head : chunk).subarray(0, n));
      mine += n;
      sent.n += n;
    }
    await conn.closeWrite();
    const reply = (await readAllText(conn)).trim();
    if (Number(reply) !== bytes) {
      throw new Error(`The sink got ${reply || "no answer"} of ${bytes} bytes`);
    }
  } finally {
    conn.close();
  }
}

async function bulk(
  port: number,
  bytes: number,
  connections: number,
): Promise<Partial<LoadResult>> {
  const share = Math.floor(bytes / connections);
  const sent = { n: 0 };
  progress = "";
  const timer = setInterval(
    () => (progress = `${sent.n} of ${share * connections} bytes sent`),
    200,
  );
  try {
    const start = performance.now();
    await Promise.all(Array.from({ length: connections }, () => bulkOne(port, share, sent)));
    const seconds = (performance.now() - start) / 1000;
    return { bytes: share * connections, MBps: share * connections / 1e6 / seconds };
  } finally {
    clearInterval(timer);
  }
}

async function rtt(
  port: number,
  count: number,
  warmup: number,
  size: number,
): Promise<Partial<LoadResult>> {
  const conn = await Deno.connect({ hostname: LOOPBACK, port });
  try {
    conn.setNoDelay(true);
    const msg = new Uint8Array(size).fill(0x61);
    msg[0] = ECHO;
    const buf = new Uint8Array(Math.max(size, 64 * 1024));
    const samples: number[] = [];
    for (let i = 0; i < warmup + count; i++) {
      progress = `${i} of ${warmup + count} round trips`;
      const t0 = performance.now();
      await writeAll(conn, msg);
      await readExactly(conn, buf, size);
      if (i >= warmup) samples.push((performance.now() - t0) * 1000);
    }
    samples.sort((a, b) => a - b);
    const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
    return {
      p50Us: at(0.5),
      p99Us: at(0.99),
      meanUs: samples.reduce((a, b) => a + b, 0) / samples.length,
    };
  } finally {
    conn.close();
  }
}

/** One connect, one-byte echo, close; throws on failure or after CONNECT_OP_TIMEOUT_MS. */
async function connectOnce(port: number, buf: Uint8Array): Promise<void> {
  let conn: Deno.TcpConn | undefined;
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`No connection and echo within ${CONNECT_OP_TIMEOUT_MS} ms`)),
      CONNECT_OP_TIMEOUT_MS,
    );
  });
  const op = (async () => {
    conn = await Deno.connect({ hostname: LOOPBACK, port });
    if (done) return; // timed out while connecting: `finally` below has already run
    conn.setNoDelay(true);
    await writeAll(conn, new Uint8Array([ECHO]));
    await readExactly(conn, buf, 1);
  })();
  try {
    await Promise.race([op, timeout]);
  } finally {
    done = true;
    clearTimeout(timer);
    op.catch(() => {}).finally(() => closeQuietly(conn));
    closeQuietly(conn); // also wakes a read that is still pending
  }
}

function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch { /* already closed */ }
}

async function connectRate(
  port: number,
  count: number,
  concurrency: number,
  deadline: number,
): Promise<Partial<LoadResult>> {
  let started = 0;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    const buf = new Uint8Array(16);
    while (started < count && Date.now() < deadline) {
      started++;
      try {
        await connectOnce(port, buf);
        ok++;
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
      progress = `${ok} connections ok, ${failed} failed`;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const seconds = (performance.now() - start) / 1000;
  return { ok, failed, perSecond: ok / seconds, ...(firstError ? { firstError } : {}) };
}

async function main(): Promise<void> {
  const flags = parseCommandLine({
    name: "bench/load.ts",
    summary: "Load generator of `deno task bench`: prints one JSON line of figures.",
    flags: [
      { name: "mode", kind: "string", default: "bulk", help: "bulk, rtt or connect" },
      { name: "port", kind: "integer", help: "TCP port on 127.0.0.1 to load" },
      { name: "bytes", kind: "integer", default: String(1 << 30), help: "bulk: bytes in all" },
      { name: "connections", kind: "integer", default: "1", help: "bulk: parallel connections" },
      {
        name: "count",
        kind: "integer",
        default: "2000",
        help: "rtt: timed round trips; connect: connections",
      },
      { name: "warmup", kind: "integer", default: "200", help: "rtt: untimed round trips first" },
      { name: "size", kind: "integer", default: "64", help: "rtt: message bytes" },
      { name: "concurrency", kind: "integer", default: "1", help: "connect: parallel workers" },
      { name: "timeout-ms", kind: "integer", default: "120000", help: "give up after this long" },
    ],
  }, Deno.args);
  const port = flags.integer("port");
  const timeoutMs = flags.integer("timeout-ms");
  const mode = flags.string("mode") as LoadSpec["mode"];
  const deadline = Date.now() + timeoutMs;
  const bail = setTimeout(() => {
    console.log(
      JSON.stringify({ error: `Timed out after ${timeoutMs} ms (${progress || "no progress"})` }),
    );
    Deno.exit(1);
  }, timeoutMs);
  const cpu0 = ownCpuSeconds();
  const startMs = Date.now();
  let figures: Partial<LoadResult>;
  try {
    if (mode === "bulk") {
      figures = await bulk(port, flags.integer("bytes"), Math.max(1, flags.integer("connections")));
    } else if (mode === "rtt") {
      figures = await rtt(
        port,
        flags.integer("count"),
        flags.integer("warmup"),
        Math.max(1, flags.integer("size")),
      );
    } else if (mode === "connect") {
      figures = await connectRate(
        port,
        flags.integer("count"),
        Math.max(1, flags.integer("concurrency")),
        deadline,
      );
    } else {
      throw new Error(`Unknown mode "${mode}": use bulk, rtt or connect`);
    }
  } catch (err) {
    console.log(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
    Deno.exit(1);
  }
  clearTimeout(bail);
  const endMs = Date.now();
  const seconds = (endMs - startMs) / 1000;
  const result: LoadResult = {
    mode,
    startMs,
    endMs,
    seconds,
    loadCpuPct: (ownCpuSeconds() - cpu0) / Math.max(seconds, 0.001) * 100,
    ...figures,
  };
  console.log(JSON.stringify(result));
  Deno.exit(0); // no straggler (an abandoned connect) may hold the process
}

if (import.meta.main) await main();
