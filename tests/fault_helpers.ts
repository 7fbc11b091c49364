/**
 * Small pieces for the fault tests: a seeded random source whose seed is
 * printed (so a failing run can be repeated), a process's open descriptors
 * and resident memory from Linux's `/proc`, and how a client connection
 * ends. They measure; the tests print the figures and never assert them.
 */
import { readProc } from "../bench/proc_stats.ts";
import { type Connection, openConnection, randomBytes } from "./net_helpers.ts";

/**
 * A random source for `what`, seeded from `FAULT_SEED` or the clock; prints
 * the seed. Not for cryptography.
 */
export function seededRandom(what: string): () => number {
  const seed = Number(Deno.env.get("FAULT_SEED") ?? Date.now() % 1_000_000_007);
  console.log(`${what}: FAULT_SEED=${seed}`);
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/** Open file descriptors of `pid` (sockets included). */
export function openFds(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident memory of `pid`, KiB (0 once it has exited). */
export function rssKiB(pid: number): number {
  return readProc(pid)?.rssKiB ?? 0;
}

/** How a client connection through a mapping ended, and after how long. */
export interface Ending {
  /** "end"/"close" from the peer, "refused" at connect, or "hang" when nothing came by the deadline. */
  how: "end" | "close" | "refused" | "hang";
  ms: number;
}

/**
 * Connects to `port`, writes a little, and waits (at most `deadlineMs`) for
 * the peer to end or close the connection; for targets that must never
 * answer. The connection is destroyed afterwards.
 */
export async function awaitEnding(port: number, deadlineMs = 60_000): Promise<Ending> {
  const started = performance.now();
  let conn: Connection;
  try {
    conn = await openConnection(port);
  } catch {
    return { how: "refused", ms: Math.round(performance.now() - started) };
  }
  conn.socket.on("error", () => {});
  conn.socket.write(randomBytes(1024));
  conn.socket.resume();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const how = await Promise.race([
    conn.ended,
    new Promise<"hang">((r) => (timer = setTimeout(() => r("hang"), deadlineMs))),
  ]);
  clearTimeout(timer);
  conn.close();
  return { how, ms: Math.round(performance.now() - started) };
}

/** `min / median / max` of `values`, rounded, for printing. */
export function spread(values: number[]): string {
  if (values.length === 0) return "none";
  const s = [...values].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v);
  return `${r(s[0])} / ${r(s[Math.floor(s.length / 2)])} / ${r(s[s.length - 1])}`;
}
