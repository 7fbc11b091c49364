/**
 * Resident memory and CPU time of running processes, read from Linux's
 * `/proc/<pid>/status` (VmRSS, VmHWM) and `/proc/<pid>/stat` (utime + stime),
 * sampled on a timer so a measurement can ask afterwards what each process
 * used during its own time window.
 *
 * It only reads (and, to reset the peak, writes `5` to `/proc/<pid>/clear_refs`);
 * it never signals a process. A process that has exited simply stops yielding
 * samples. Linux only.
 *
 * @example
 * ```ts
 * const sampler = new ProcSampler({ hub: [hub.child.pid] });
 * sampler.start();
 * sampler.resetPeaks();
 * const from = Date.now();
 * // ... load ...
 * const usage = sampler.usage(from, Date.now()); // { hub: { cpuPct, rssPeakKiB } }
 * await sampler.stop();
 * ```
 */

/** Clock ticks per second of `/proc/<pid>/stat` times; 100 on every Linux we run on. */
const CLK_TCK = 100;

/** One reading of one process. */
export interface ProcReading {
  /** Epoch milliseconds. */
  t: number;
  /** utime + stime, in clock ticks, over all threads. */
  ticks: number;
  /** VmRSS, KiB. */
  rssKiB: number;
}

/** What a group of processes used in one time window. */
export interface ProcUsage {
  /** CPU time per wall time, in % of one core (may exceed 100 on several cores). */
  cpuPct: number;
  /**
   * Per process the highest VmRSS sampled in the window, or its VmHWM since
   * `resetPeaks()` if higher; summed over the group's processes. KiB.
   */
  rssPeakKiB: number;
}

/**
 * The pseudo-pid whose readings are the whole machine's busy CPU time (all
 * cores, from `/proc/stat`), so a measurement can tell how much CPU went to
 * processes it does not know. Name it in a group like any pid.
 */
export const SYSTEM = 0;

/**
 * Busy ticks of all cores together, from `/proc/stat`: user, nice, system and
 * steal (time the hypervisor gave to someone else). Interrupt and softirq
 * time are left out: loopback traffic is mostly softirq work that no process
 * is charged for, so it would look like someone else's.
 */
function readSystemTicks(): number | undefined {
  try {
    const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).map(Number);
    // cpu user nice system idle iowait irq softirq steal ...
    return cpu[1] + cpu[2] + cpu[3] + (cpu[8] || 0);
  } catch {
    return undefined;
  }
}

/** Reads utime + stime (ticks) and VmRSS/VmHWM (KiB) of `pid`; undefined once it has exited. */
export function readProc(
  pid: number,
): { ticks: number; rssKiB: number; hwmKiB: number } | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kib = (key: string) =>
      Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
    return { ticks, rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM") };
  } catch {
    return undefined;
  }
}

/**
 * CPU ticks at time `t`, interpolated between the readings around it (so a
 * window shorter than the sampling interval still gets its share); clamped to
 * the first and last reading.
 */
function ticksAt(series: ProcReading[], t: number): number | undefined {
  if (series.length === 0) return undefined;
  const after = series.findIndex((r) => r.t >= t);
  if (after === 0) return series[0].ticks;
  if (after < 0) return series[series.length - 1].ticks;
  const a = series[after - 1];
  const b = series[after];
  return a.ticks + (b.ticks - a.ticks) * (t - a.t) / (b.t - a.t);
}

/** Every live descendant of `pid` (children, grandchildren, ...), found by scanning `/proc`. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parentOf.set(Number(entry.name), ppid);
    } catch { /* exited while scanning */ }
  }
  const found: number[] = [];
  let frontier = [pid];
  while (frontier.length > 0 && found.length < 1_000) {
    const next: number[] = [];
    for (const [child, parent] of parentOf) if (frontier.includes(parent)) next.push(child);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/**
 * Samples named groups of processes every `intervalMs`. Groups may change
 * between measurements (`setGroup`); not safe to use after `stop()`.
 */
export class ProcSampler {
  #groups = new Map<string, number[]>();
  #series = new Map<number, ProcReading[]>();
  #hwmReset = new Set<number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #intervalMs: number;
  /** Readings kept per process: enough for the longest measurement at the sampling rate. */
  #keep: number;

  constructor(groups: Record<string, number[]>, intervalMs = 100, keepMs = 30 * 60_000) {
    for (const [name, pids] of Object.entries(groups)) this.#groups.set(name, pids);
    this.#intervalMs = intervalMs;
    this.#keep = Math.ceil(keepMs / intervalMs);
  }

  /** Adds or replaces a group. */
  setGroup(name: string, pids: number[]): void {
    this.#groups.set(name, pids);
  }

  /** Starts the timer (idempotent). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.#intervalMs);
  }

  /** Stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one reading of every process now (the timer also calls it). */
  #sample(): void {
    const t = Date.now();
    for (const pids of this.#groups.values()) {
      for (const pid of pids) {
        const r = pid === SYSTEM ? { ticks: readSystemTicks(), rssKiB: 0 } : readProc(pid);
        if (r?.ticks === undefined) continue;
        let series = this.#series.get(pid);
        if (!series) this.#series.set(pid, series = []);
        series.push({ t, ticks: r.ticks, rssKiB: r.rssKiB });
        if (series.length > this.#keep) series.splice(0, series.length - this.#keep);
      }
    }
  }

  /**
   * Resets each process's VmHWM to its current RSS, so the next `usage()`
   * also catches peaks between samples. Needs permission to write
   * `/proc/<pid>/clear_refs` (own processes); where refused, only samples count.
   */
  resetPeaks(): void {
    this.#hwmReset.clear();
    for (const pids of this.#groups.values()) {
      for (const pid of pids) {
        if (pid === SYSTEM) continue;
        try {
          Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
          this.#hwmReset.add(pid);
        } catch { /* not permitted: sampled peaks only */ }
      }
    }
  }

  /** Usage per group between epoch milliseconds `from` and `to` (takes a final reading first). */
  usage(from: number, to: number): Record<string, ProcUsage> {
    this.#sample();
    const out: Record<string, ProcUsage> = {};
    for (const [name, pids] of this.#groups) {
      let cpuPct = 0;
      let rssPeakKiB = 0;
      for (const pid of pids) {
        const series = this.#series.get(pid) ?? [];
        const a = ticksAt(series, from);
        const b = ticksAt(series, to);
        if (a !== undefined && b !== undefined && to > from) {
          cpuPct += Math.max(0, b - a) / CLK_TCK / ((to - from) / 1000) * 100;
        }
        let peak = 0;
        for (const r of series) if (r.t >= from && r.t <= to) peak = Math.max(peak, r.rssKiB);
        const now = this.#hwmReset.has(pid) ? readProc(pid) : undefined;
        if (now) peak = Math.max(peak, now.hwmKiB);
        rssPeakKiB += peak; // a group's processes are all resident at once
      }
      out[name] = { cpuPct, rssPeakKiB };
    }
    return out;
  }
}
