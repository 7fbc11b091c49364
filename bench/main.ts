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
import { Harness, type Proc, ROOT } from "../tests/harness.ts";
import { iperfPath, runIperfClient, startIperfServer } from "./iperf.ts";
import { type LoadResult, type LoadSpec, runLoad } from "./load.ts";
import { startMesh } from "./mesh.ts";
import { ProcSampler, type ProcUsage } from "./proc_stats.ts";
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
  ],
  examples: [
    "deno task bench",
    "deno task bench --runs=3",
    "deno task bench --mib=256 --paths=ztm",
  ],
};

/** The measurements, in the order each run makes them. */
type Measurement = "bulk" | "iperf3" | "parallel" | "rtt" | "connSeq" | "connPar";

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
  paths: (flags.string("paths") ?? "").split(",").map((p) => p.trim()).filter(Boolean),
};
for (const f of SPEC.flags) {
  if (f.kind === "integer" && flags.integer(f.name) < 1) {
    usageExit(`--${f.name} must be at least 1`);
  }
}
for (const p of config.paths) {
  if (!(PATHS as readonly string[]).includes(p)) usageExit(`--paths: unknown path "${p}"`);
}
const BYTES = config.mib * 1024 * 1024;

function usageExit(message: string): never {
  console.error(`${SPEC.name}: ${message}`);
  Deno.exit(2);
}

function progress(message: string): void {
  console.error(`bench: ${message}`);
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
  results.notes.push("iperf3 not found (Debian: apt-get install iperf3): iperf3 row skipped");
}
let sshReason = config.paths.includes("ssh") ? sshMissing() : "not requested";
if (sshReason && config.paths.includes("ssh")) {
  results.notes.push(`ssh -L baseline skipped: ${sshReason}`);
}

progress("starting the echo server, iperf3 -s, CA, hub and agents");
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
    results.notes.push(...ssh.notes);
  } catch (err) {
    sshReason = `could not start: ${err instanceof Error ? err.message : err}`;
    results.notes.push(`ssh -L baseline skipped: ${sshReason}`);
  }
}

/** The local port that reaches `target` on `path`, or undefined when the path is off. */
function entry(path: PathName, target: number): number | undefined {
  if (!config.paths.includes(path)) return undefined;
  if (path === "direct") return target;
  if (path === "ssh") return ssh?.ports.get(target);
  return mesh?.ports.get(target);
}

const sampler = new ProcSampler({ echo: [echo.child.pid] });
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

/** What one measurement yields: its figures and the span it was measured in. */
interface Measured {
  figures: Record<string, number>;
  startMs: number;
  endMs: number;
  loadCpuPct?: number;
  failed?: number;
  firstError?: string;
}

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

const bulkTimeout = (bytes: number) => 30_000 + Math.ceil(bytes / 10e6) * 1000; // floor: 10 MB/s
const connectTimeout = (n: number) => 30_000 + n * 20;

/** Runs measurement `m` against `port` (the entry to the echo server, or to iperf3). */
async function measure(m: Measurement, port: number): Promise<Measured> {
  const load = (spec: LoadSpec, timeoutMs: number, keys: (keyof LoadResult)[]) =>
    runLoad(spec, timeoutMs).then((r) => fromLoad(r, keys));
  switch (m) {
    case "bulk":
      return await load({ mode: "bulk", port, bytes: BYTES, connections: 1 }, bulkTimeout(BYTES), [
        "MBps",
      ]);
    case "iperf3": {
      const r = await runIperfClient(iperf!, port, BYTES, bulkTimeout(BYTES));
      return { figures: { MBps: r.MBps }, startMs: r.startMs, endMs: r.endMs };
    }
    case "parallel":
      return await load(
        { mode: "bulk", port, bytes: BYTES, connections: config.streams },
        bulkTimeout(BYTES),
        ["MBps"],
      );
    case "rtt":
      return await load(
        { mode: "rtt", port, count: config.rtt, warmup: config.rttWarmup, size: 64 },
        60_000,
        ["p50Us", "p99Us", "meanUs"],
      );
    case "connSeq":
      return await load(
        { mode: "connect", port, count: config.connects, concurrency: 1 },
        connectTimeout(config.connects),
        ["perSecond"],
      );
    case "connPar":
      return await load(
        { mode: "connect", port, count: config.parallelConnects, concurrency: config.concurrency },
        connectTimeout(config.parallelConnects),
        ["perSecond"],
      );
  }
}

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

/** Measures `m` on `path`, records its figures and the processes' usage; failures become errors. */
async function measureAndRecord(run: number, m: Measurement, path: PathName): Promise<void> {
  const target = m === "iperf3" ? iperfPort : echo.port;
  const port = target === undefined ? undefined : entry(path, target);
  if (port === undefined) return;
  const marks = new Map(meshProcs.map((p) => [p, p.logs.length]));
  sampler.resetPeaks();
  let r: Measured;
  try {
    r = await measure(m, port);
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
  const usage: Record<string, ProcUsage> = sampler.usage(r.startMs, r.endMs);
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
  progress(
    `run ${run} ${path} ${m}: ${shownFigures}${
      path === "direct" ? "" : ` tunnel CPU ${round(cpu)} %`
    }`,
  );
}

const activePaths = PATHS.filter((p) => entry(p, echo.port) !== undefined);
progress(`warming up ${activePaths.join(", ")}`);
for (const path of activePaths) {
  const port = entry(path, echo.port)!;
  try {
    await runLoad({ mode: "bulk", port, bytes: 64 << 20, connections: 2 }, 60_000);
    await runLoad({ mode: "connect", port, count: 100, concurrency: 4 }, 60_000);
    await runLoad({ mode: "rtt", port, count: 200, warmup: 0, size: 64 }, 60_000);
  } catch (err) {
    results.errors.push({ path, measurement: "warm-up", message: String(err) });
    progress(`warm-up on ${path} failed: ${err}`);
  }
}

const measurements: Measurement[] = ["bulk", "iperf3", "parallel", "rtt", "connSeq", "connPar"];
for (let run = 1; run <= config.runs; run++) {
  for (const m of measurements) {
    if (m === "iperf3" && !iperf) continue;
    for (const path of activePaths) await measureAndRecord(run, m, path);
  }
}

// Report.
const machine = {
  cpus: navigator.hardwareConcurrency,
  cpu: /model name\s*:\s*(.*)/.exec(readOr("/proc/cpuinfo"))?.[1] ?? "unknown",
  kernel: Deno.osRelease(),
  deno: Deno.version.deno,
};
const source = await gitState();
console.log(
  `\n## ztm data path, ${config.mib} MiB bulk, ${config.runs} run${
    config.runs > 1 ? "s (median (min–max))" : ""
  }\n`,
);
console.log(
  `${machine.cpus} cores, ${machine.cpu}, Linux ${machine.kernel}, Deno ${machine.deno}, ${source}\n`,
);
console.log(figuresTable(results, rows.filter((r) => r.figure !== "iperf3.MBps" || iperf)));
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
    measurements.filter((m) => m !== "iperf3" || iperf).map((m) => [
      LABELS[m],
      ...procs.map(([name, path]) => usageCell(m, name, path)),
    ]),
  ),
);
const loadMax = Math.max(...measurements.map((m) => results.max(`${m}.cpuPct.load`) ?? 0));
const echoMax = Math.max(...measurements.map((m) => results.max(`${m}.cpuPct.echo`) ?? 0));
console.log(
  `\nLoad generator: at most ${round(loadMax)} % of a core; echo/sink server: at most ${
    round(echoMax)
  } %.`,
);
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

function readOr(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** `commit` and whether hub/, agent/ or shared/ have uncommitted changes (another engineer's work in progress). */
async function gitState(): Promise<string> {
  try {
    const git = (args: string[]) =>
      new Deno.Command("git", { args: ["-C", ROOT, ...args], stdin: "null", stderr: "null" })
        .output()
        .then((o) => new TextDecoder().decode(o.stdout).trim());
    const head = await git(["rev-parse", "--short", "HEAD"]);
    const dirty = await git(["status", "--porcelain", "--", "hub", "agent", "shared"]);
    return head
      ? `commit ${head}${dirty ? " + uncommitted changes in hub/agent/shared" : ""}`
      : "no git";
  } catch {
    return "no git";
  }
}
