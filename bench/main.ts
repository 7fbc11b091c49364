/**
 * `deno task bench`: ztm's data path against a direct loopback connection and
 * `ssh -N -L`, in one run on one machine.
 *
 * It starts an echo/sink server (`echo_server.ts`), `iperf3 -s` if installed,
 * a CA, a hub and two agents (agent A maps a port to services on agent B,
 * `mesh.ts`), and a temporary sshd with an `ssh -L` client if installed
 * (`sshd.ts`). Then, per run, for each path: bulk throughput on one
 * connection (own load generator and iperf3), on N parallel connections,
 * 64-byte round-trip latency, and new connections per second (sequential and
 * parallel). Load comes from a separate process (`load.ts`); hub, agents, ssh
 * and sshd are sampled every 100 ms for CPU and RSS (`proc_stats.ts`).
 *
 * Progress goes to stderr; stdout gets the markdown tables, notes, and last
 * one JSON line with every figure. Nothing is installed: a missing baseline
 * is named and skipped. Only 127.0.0.1 is used.
 *
 *   deno task bench [--mib=1024] [--runs=3]
 */
import { type CommandSpec, parseCommandLine } from "@ztm/shared/flags";
import { VERSION } from "@ztm/shared/version";
import { Harness, type Proc, ROOT } from "../tests/fixtures/harness.ts";
import { iperfPath, startIperfServer } from "./iperf.ts";
import { describeMachine, sourceState } from "./machine.ts";
import {
  measure,
  type MeasureConfig,
  type Measured,
  type Measurement,
  MEASUREMENTS,
  warmUp,
} from "./measurements.ts";
import { startMesh } from "./mesh.ts";
import { ProcSampler, type ProcUsage, SYSTEM } from "./proc_stats.ts";
import {
  figuresJson,
  figuresTable,
  markdownTable,
  type PathName,
  PATHS,
  Results,
  round,
  type Row,
} from "./report.ts";
import { sshMissing, type SshTunnel, startSshTunnel } from "./sshd.ts";

const SPEC: CommandSpec = {
  name: "deno task bench",
  summary:
    "Benchmarks ztm's data path against direct loopback and ssh -N -L; prints tables and one JSON line.",
  flags: [
    { name: "mib", kind: "integer", default: "1024", help: "MiB per bulk measurement" },
    {
      name: "runs",
      kind: "integer",
      default: "1",
      help: "repeat the whole set; report min/median/max",
    },
    {
      name: "streams",
      kind: "integer",
      default: "8",
      help: "parallel connections in the aggregate bulk figure",
    },
    { name: "rtt", kind: "integer", default: "2000", help: "timed 64-byte round trips" },
    { name: "rtt-warmup", kind: "integer", default: "200", help: "untimed round trips first" },
    { name: "connects", kind: "integer", default: "500", help: "sequential new connections" },
    {
      name: "parallel-connects",
      kind: "integer",
      default: "2000",
      help: "new connections, in parallel",
    },
    { name: "concurrency", kind: "integer", default: "32", help: "parallel connection workers" },
    { name: "paths", kind: "string", default: "direct,ssh,ztm", help: "paths to measure" },
    {
      name: "udp",
      kind: "string",
      default: "on",
      help: "also run the UDP bench (bench/udp.ts) after the TCP figures: on or off",
    },
    {
      name: "quiet-wait",
      kind: "integer",
      default: "120",
      help: "before each measurement, wait up to this many seconds while other processes " +
        "use over 25 % of a core, and redo (twice at most) one they disturbed; 0: neither",
    },
  ],
  examples: [
    "deno task bench",
    "deno task bench --runs=3",
    "deno task bench --mib=256 --paths=ztm",
  ],
};

/** Which processes carry the tunnel on each path (sampler group names). */
const TUNNEL_PROCS: Record<PathName, string[]> = {
  direct: [],
  ssh: ["ssh", "sshd"],
  ztm: ["hub", "agentA", "agentB"],
};

const flags = parseCommandLine(SPEC, Deno.args);
const config = {
  mib: flags.integer("mib"),
  runs: flags.integer("runs"),
  streams: flags.integer("streams"),
  rtt: flags.integer("rtt"),
  rttWarmup: flags.integer("rtt-warmup"),
  connects: flags.integer("connects"),
  parallelConnects: flags.integer("parallel-connects"),
  concurrency: flags.integer("concurrency"),
  quietWait: flags.integer("quiet-wait"),
  paths: (flags.string("paths") ?? "").split(",").map((p) => p.trim()).filter(Boolean),
  udp: flags.string("udp") !== "off",
};
for (const f of SPEC.flags) {
  if (f.kind === "integer" && f.name !== "quiet-wait" && flags.integer(f.name) < 1) {
    usageExit(`--${f.name} must be at least 1`);
  }
}
for (const p of config.paths) {
  if (!(PATHS as readonly string[]).includes(p)) usageExit(`--paths: unknown path "${p}"`);
}

function usageExit(message: string): never {
  console.error(`${SPEC.name}: ${message}`);
  Deno.exit(2);
}

function progress(message: string): void {
  console.error(`bench: ${message}`);
}

/** A remark for the reader: shown now on stderr and again under the tables. */
function note(message: string): void {
  progress(message);
  results.notes.push(message);
}

const results = new Results();
const rows: Row[] = [
  { figure: "bulk.MBps", label: "bulk, 1 connection, MB/s" },
  { figure: "iperf3.MBps", label: "bulk, 1 connection, iperf3, MB/s" },
  { figure: "parallel.MBps", label: `bulk, ${config.streams} connections, MB/s` },
  { figure: "rtt.p50Us", label: "64 B round trip, p50, µs" },
  { figure: "rtt.p99Us", label: "64 B round trip, p99, µs" },
  { figure: "connSeq.perSecond", label: "new connections/s, sequential" },
  { figure: "connPar.perSecond", label: `new connections/s, ${config.concurrency} parallel` },
];
const LABELS: Record<Measurement, string> = {
  bulk: "bulk 1 conn",
  iperf3: "iperf3",
  parallel: `bulk ${config.streams} conns`,
  rtt: "round trips",
  connSeq: "connections seq.",
  connPar: "connections par.",
};
for (const m of Object.keys(LABELS) as Measurement[]) {
  rows.push({ figure: `${m}.tunnelCpuPct`, label: `tunnel CPU, ${LABELS[m]}, % of a core` });
}
for (const m of Object.keys(LABELS) as Measurement[]) {
  rows.push({ figure: `${m}.tunnelRssMiB`, label: `tunnel peak RSS, ${LABELS[m]}, MiB` });
}

await using cleanup = new AsyncDisposableStack();
const onInterrupt = () => {
  progress("interrupted: stopping every process it started");
  cleanup.disposeAsync().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", onInterrupt);
cleanup.defer(() => Deno.removeSignalListener("SIGINT", onInterrupt));
const h = cleanup.use(new Harness());

// Baselines that need outside programs.
const iperf = iperfPath();
if (!iperf) {
  note("iperf3 not found (Debian: apt-get install iperf3): the iperf3 figures are skipped");
}
let sshReason = config.paths.includes("ssh") ? sshMissing() : "not requested";
if (sshReason && config.paths.includes("ssh")) note(`ssh -L baseline skipped: ${sshReason}`);

progress(
  `starting the echo server${iperf ? ", iperf3 -s" : ""}${
    config.paths.includes("ztm") ? ", CA, hub and agents" : ""
  }`,
);
const echo = await h.spawnService("echo", "bench/echo_server.ts", ["--listen=127.0.0.1:0"]);
let iperfPort: number | undefined;
if (iperf) {
  const server = await startIperfServer(iperf);
  cleanup.defer(() => server.proc.stop().then(() => {}));
  iperfPort = server.port;
}
const targets: Record<string, number> = { echo: echo.port };
if (iperfPort) targets.iperf = iperfPort;
const mesh = config.paths.includes("ztm") ? await startMesh(h, targets) : undefined;
let ssh: SshTunnel | undefined;
if (!sshReason) {
  progress("starting sshd and ssh -N -L");
  try {
    ssh = await startSshTunnel(Object.values(targets));
    cleanup.defer(() => ssh!.close());
    ssh.notes.forEach(note);
  } catch (err) {
    sshReason = `could not start: ${err instanceof Error ? err.message : err}`;
    note(`ssh -L baseline skipped: ${sshReason}`);
  }
}

/** The local port that reaches `target` on `path`, or undefined when the path is off. */
function entry(path: PathName, target: number): number | undefined {
  if (!config.paths.includes(path)) return undefined;
  if (path === "direct") return target;
  if (path === "ssh") return ssh?.ports.get(target);
  return mesh?.ports.get(target);
}

const measureConfig: MeasureConfig = {
  bytes: config.mib * 1024 * 1024,
  streams: config.streams,
  rtt: config.rtt,
  rttWarmup: config.rttWarmup,
  connects: config.connects,
  parallelConnects: config.parallelConnects,
  concurrency: config.concurrency,
  iperf,
};

const sampler = new ProcSampler({
  echo: [echo.child.pid],
  bench: [Deno.pid],
  system: [SYSTEM],
});
if (mesh) {
  sampler.setGroup("hub", [mesh.hub.child.pid]);
  sampler.setGroup("agentA", [mesh.agentA.child.pid]);
  sampler.setGroup("agentB", [mesh.agentB.child.pid]);
}
if (ssh) {
  sampler.setGroup("ssh", [ssh.sshPid]);
  sampler.setGroup("sshd", ssh.sshdPids());
}
sampler.start();
cleanup.defer(() => sampler.stop());

/** Warn and error lines the mesh processes logged since `marks`, for the report. */
function meshLogsSince(marks: Map<Proc, number>): string[] {
  const lines: string[] = [];
  for (const [proc, from] of marks) {
    for (const l of proc.logs.slice(from)) {
      if (l.level === "warn" || l.level === "error") {
        lines.push(`${proc.name}: ${JSON.stringify(l)}`);
      }
    }
  }
  return lines;
}

const meshProcs = mesh ? [mesh.hub, mesh.agentA, mesh.agentB] : [];
const meshLogCounts = new Map<string, number>();
const meshLogSamples: string[] = [];

/**
 * CPU (% of a core) the machine spent outside the bench's own processes in
 * `usage`'s window: other work that disturbs the figures. `loadCpuPct` is
 * the load process's, which the sampler does not see.
 */
function otherCpu(usage: Record<string, ProcUsage>, loadCpuPct: number): number {
  if (!usage.system) return 0;
  const known = Object.entries(usage).filter(([name]) => name !== "system")
    .reduce((sum, [, u]) => sum + u.cpuPct, loadCpuPct);
  return Math.max(0, usage.system.cpuPct - known);
}

/** Other processes may use up to this much CPU (% of a core) during a measurement. */
const QUIET_PCT = 25;
/** A measurement disturbed by others is made again, up to this many times in all. */
const MAX_ATTEMPTS = 3;
let quietWaits = 0;
let quietWaitedMs = 0;
let redone = 0;

/**
 * Waits, up to `--quiet-wait` seconds, until other processes used under 25 %
 * of a core over the last second; on a shared machine a test run next door
 * otherwise halves the figures. Gives up silently at the deadline (the
 * "other" figures then show the disturbance).
 */
async function waitForQuiet(what: string): Promise<void> {
  const started = Date.now();
  const deadline = started + config.quietWait * 1000;
  let told = false;
  while (Date.now() < deadline) {
    const now = Date.now();
    const other = otherCpu(sampler.usage(now - 1000, now), 0);
    if (other < QUIET_PCT) break;
    if (!told) {
      progress(
        `waiting for a quiet machine before ${what}: others use ${round(other)} % of a core`,
      );
      told = true;
      quietWaits++;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (told) quietWaitedMs += Date.now() - started;
}

/** Measures `m` on `path`, records its figures and the processes' usage; failures become errors. */
async function measureAndRecord(run: number, m: Measurement, path: PathName): Promise<void> {
  const target = m === "iperf3" ? iperfPort : echo.port;
  const port = target === undefined ? undefined : entry(path, target);
  if (port === undefined) return;
  let r: Measured | undefined;
  let usage: Record<string, ProcUsage> = {};
  for (let attempt = 1; !r; attempt++) {
    await waitForQuiet(`${m} on ${path}`);
    const marks = new Map(meshProcs.map((p) => [p, p.logs.length]));
    sampler.resetPeaks();
    try {
      r = await measure(m, port, measureConfig);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      results.errors.push({ run, path, measurement: m, message });
      progress(`run ${run} ${path} ${m}: FAILED: ${message}`);
      return;
    } finally {
      for (const line of meshLogsSince(marks)) {
        const key = `${m} on ${path}`;
        meshLogCounts.set(key, (meshLogCounts.get(key) ?? 0) + 1);
        if (meshLogSamples.length < 10) meshLogSamples.push(`${key}: ${line}`);
      }
    }
    usage = sampler.usage(r.startMs, r.endMs);
    // iperf3's own processes are not sampled, and in a window under half a second the 10 ms
    // CPU ticks of half a dozen processes add up to noise: no "other" figure for either.
    if (m === "iperf3" || r.endMs - r.startMs < 500) continue;
    const other = otherCpu(usage, r.loadCpuPct ?? 0);
    if (other >= QUIET_PCT && attempt < MAX_ATTEMPTS && config.quietWait > 0) {
      progress(`run ${run} ${path} ${m}: others used ${round(other)} % of a core meanwhile: again`);
      redone++;
      r = undefined;
      continue;
    }
    results.add(`${m}.cpuPct.other`, path, other);
  }
  for (const [k, v] of Object.entries(r.figures)) results.add(`${m}.${k}`, path, v);
  if (r.loadCpuPct !== undefined) results.add(`${m}.cpuPct.load`, path, r.loadCpuPct);
  if (r.failed) {
    results.add(`${m}.failed`, path, r.failed);
    results.errors.push({
      run,
      path,
      measurement: m,
      message: `${r.failed} connections failed, first: ${r.firstError}`,
    });
  }
  const shown = path === "direct" ? ["echo"] : [...TUNNEL_PROCS[path], "echo"];
  let cpu = 0;
  let rss = 0;
  for (const name of shown) {
    const u = usage[name];
    if (!u) continue;
    results.add(`${m}.cpuPct.${name}`, path, u.cpuPct);
    results.add(`${m}.rssMiB.${name}`, path, u.rssPeakKiB / 1024);
    if (TUNNEL_PROCS[path].includes(name)) {
      cpu += u.cpuPct;
      rss += u.rssPeakKiB / 1024;
    }
  }
  if (TUNNEL_PROCS[path].length > 0) {
    results.add(`${m}.tunnelCpuPct`, path, cpu);
    results.add(`${m}.tunnelRssMiB`, path, rss);
  }
  const shownFigures = Object.entries(r.figures).map(([k, v]) => `${k}=${round(v)}`).join(" ");
  const tunnel = path === "direct"
    ? ""
    : `, tunnel CPU ${round(cpu)} %, peak RSS ${round(rss)} MiB`;
  progress(`run ${run} ${path} ${m}: ${shownFigures}${tunnel}`);
}

const activePaths = PATHS.filter((p) => entry(p, echo.port) !== undefined);
progress(`warming up ${activePaths.join(", ")}`);
for (const path of activePaths) {
  const port = entry(path, echo.port)!;
  try {
    await warmUp(port);
  } catch (err) {
    results.errors.push({ path, measurement: "warm-up", message: String(err) });
    progress(`warm-up on ${path} failed: ${err}`);
  }
}

const measurements = MEASUREMENTS.filter((m) => m !== "iperf3" || iperf);
for (let run = 1; run <= config.runs; run++) {
  for (const m of measurements) {
    for (const path of activePaths) await measureAndRecord(run, m, path);
  }
}

// Report.
const machine = describeMachine();
const source = await sourceState(ROOT);
console.log(
  `\n## ztm data path, ${config.mib} MiB bulk, ${config.runs} run${
    config.runs > 1 ? "s (median (min–max))" : ""
  }\n`,
);
console.log(
  `${machine.cpus} cores, ${machine.cpu}, Linux ${machine.kernel}, Deno ${machine.deno}, ${source}\n`,
);
console.log(figuresTable(results, rows.filter((r) => iperf || !r.figure.startsWith("iperf3."))));
console.log(
  "\nztm/ssh is the ratio of medians: above 1 is better for MB/s and connections/s, worse for µs, CPU and RSS." +
    " Tunnel CPU and RSS: ssh + sshd for ssh -L; hub + agent A + agent B for ztm.\n",
);
const procs: [string, string][] = [
  ["hub", "ztm"],
  ["agentA", "ztm"],
  ["agentB", "ztm"],
  ["ssh", "ssh"],
  ["sshd", "ssh"],
];
const usageCell = (m: string, name: string, path: string) => {
  const cpu = results.spread(`${m}.cpuPct.${name}`, path as PathName);
  const rss = results.spread(`${m}.rssMiB.${name}`, path as PathName);
  return cpu && rss ? `${round(cpu.median)} % · ${round(rss.median)} MiB` : "–";
};
console.log(
  markdownTable(
    ["CPU % of a core · peak RSS", "hub", "agent A", "agent B", "ssh", "sshd"],
    measurements.map((m) => [
      LABELS[m],
      ...procs.map(([name, path]) => usageCell(m, name, path)),
    ]),
  ),
);
// Hub CPU per GiB relayed (bulk): CPU share × seconds per GiB at the measured rate.
for (const m of ["bulk", "iperf3", "parallel"] as const) {
  if (!measurements.includes(m)) continue;
  const cpu = results.spread(`${m}.cpuPct.hub`, "ztm");
  const rate = results.spread(`${m}.MBps`, "ztm");
  if (!cpu || !rate) continue;
  const perGiB = (pct: number, mbps: number) => round((pct / 100) * (1073.741824 / mbps));
  console.log(
    `Hub CPU per GiB relayed, ${LABELS[m]}: ${perGiB(cpu.median, rate.median)} CPU-s ` +
      `(min–max ${perGiB(cpu.min, rate.max)}–${perGiB(cpu.max, rate.min)})`,
  );
}
const loadMax = (paths: PathName[]) =>
  Math.max(
    0,
    ...measurements.flatMap((m) =>
      paths.map((p) => results.spread(`${m}.cpuPct.load`, p)?.max ?? 0)
    ),
  );
console.log(
  `\nLoad generator CPU, % of a core, at most: ${round(loadMax(["direct"]))} on the direct path ` +
    `(which it bounds), ${round(loadMax(["ssh", "ztm"]))} on the tunnels.`,
);
if (redone > 0) {
  results.notes.push(
    `${redone} measurements were made again: other processes used the CPU meanwhile`,
  );
}
if (quietWaits > 0) {
  results.notes.push(
    `waited ${quietWaits} times, ${round(quietWaitedMs / 1000)} s in all, for other processes ` +
      "to leave the CPU before a measurement",
  );
}
const otherMax = Math.max(
  0,
  ...measurements.flatMap((m) =>
    PATHS.map((p) => results.spread(`${m}.cpuPct.other`, p)?.max ?? 0)
  ),
);
if (otherMax >= QUIET_PCT) {
  results.notes.push(
    `other processes used up to ${round(otherMax)} % of a core during a measurement ` +
      `(figures "*.cpuPct.other"): the machine was not idle, so figures are disturbed`,
  );
}
if (config.udp) {
  // Its own mesh and targets; its figures print here, before the notes and the JSON line.
  console.log("\nUDP (bench/udp.ts):");
  const udp = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./udp.ts", import.meta.url).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!udp.success) results.notes.push(`the UDP bench failed (exit ${udp.code})`);
}
const notes = [
  ...results.notes,
  ...results.errors.map((e) =>
    `FAILED${e.run ? ` run ${e.run}` : ""} ${e.path ?? ""} ${e.measurement ?? ""}: ${e.message}`
  ),
  ...[...meshLogCounts].map(([k, n]) => `mesh logged ${n} warn/error lines during ${k}`),
  ...meshLogSamples.map((s) => `  e.g. ${s.slice(0, 400)}`),
];
if (notes.length) console.log(`\nNotes:\n${notes.map((n) => `- ${n}`).join("\n")}`);
console.log(
  "\n" + JSON.stringify({
    bench: "ztm data path",
    version: VERSION,
    date: new Date().toISOString(),
    source,
    machine,
    config: { ...config, paths: activePaths },
    figures: figuresJson(results),
    errors: results.errors,
    notes: results.notes,
    meshWarnings: Object.fromEntries(meshLogCounts),
  }),
);
