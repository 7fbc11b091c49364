/**
 * `deno task bench:scale`: how one hub holds up with N endpoints attached.
 *
 * Per run (`scale_run.ts`): a fresh CA, hub and two real agents (agent A maps
 * a port through the hub to an echo server behind agent B); figures at N = 0;
 * then N simulated endpoints from a few simulator processes (`scale_sim.ts`,
 * real mutual-TLS HTTP/2 sessions with control streams, two services each,
 * PINGs every 10 s, the agent's reconnect backoff) owned by a handful of
 * users; the same figures at N; and a reconnect storm (the hub restarted with
 * all N attached).
 *
 * Figures: time to join all N; hub RSS and RSS per endpoint; hub CPU at rest;
 * p50/p99 of an endpoint-list page and of a service lookup through agent A's
 * API; the real tunnel's throughput and 64-byte round trip; the storm's time
 * until all are back and the hub's CPU and peak RSS meanwhile. Several runs
 * report median (min–max). Progress goes to stderr; stdout gets a markdown
 * table, the targets of the issue with whether each is met, and one JSON line.
 *
 * With `--hubs=H` (H > 1) it measures several hubs instead (`scale_hubs.ts`):
 * per run, N simulated endpoints on one hub as the baseline, then the same N
 * each on all H hubs; join time, each hub's RSS and CPU at rest, and the storm
 * when one hub restarts, with the ratios of the two.
 *
 *   deno task bench:scale [--endpoints=10000] [--runs=3] [--hubs=3]
 */
import { type CommandSpec, parseCommandLine } from "@ztm/shared/flags";
import { VERSION } from "@ztm/shared/version";
import { ROOT } from "../tests/fixtures/harness.ts";
import { describeMachine, sourceState } from "./machine.ts";
import { descendants, ProcSampler, SYSTEM } from "./proc_stats.ts";
import { cell, figuresJson, markdownTable, Results, round } from "./report.ts";
import { type ScaleConfig, scaleRun } from "./scale_run.ts";
import { type HubsConfig, hubsRun } from "./scale_hubs.ts";

const SPEC: CommandSpec = {
  name: "deno task bench:scale",
  summary: "Attaches N simulated endpoints to one hub and measures it; prints a table and JSON.",
  flags: [
    { name: "endpoints", kind: "integer", default: "10000", help: "simulated endpoints (N)" },
    { name: "runs", kind: "integer", default: "1", help: "repeat; report median (min–max)" },
    {
      name: "hubs",
      kind: "integer",
      default: "1",
      help: "hubs; above 1, every endpoint is on each, measured against one hub in the same run",
    },
    { name: "processes", kind: "integer", default: "4", help: "simulator processes" },
    {
      name: "users",
      kind: "integer",
      default: "16",
      help: "users owning the simulated endpoints (the hub allows 1,000 sessions per user)",
    },
    {
      name: "concurrency",
      kind: "integer",
      default: "32",
      help: "first dials in flight per simulator process",
    },
    {
      name: "idle-seconds",
      kind: "integer",
      default: "20",
      help: "window for the hub's CPU at rest",
    },
    { name: "api-requests", kind: "integer", default: "200", help: "timed agent API calls each" },
    { name: "page", kind: "integer", default: "100", help: "endpoint-list page size" },
    { name: "mib", kind: "integer", default: "256", help: "MiB through the real tunnel" },
    { name: "rtt", kind: "integer", default: "2000", help: "timed 64-byte round trips" },
    {
      name: "skip-storm",
      kind: "boolean",
      default: "false",
      help: "leave out the reconnect storm (the hub restarted with N attached)",
    },
    {
      name: "quiet-wait",
      kind: "integer",
      default: "120",
      help: "before each run, wait up to this many seconds while other processes use over " +
        "25 % of a core; 0: no wait",
    },
    {
      name: "timeout",
      kind: "integer",
      default: "300",
      help: "seconds to wait for all to join, and again to come back",
    },
  ],
  examples: [
    "deno task bench:scale",
    "deno task bench:scale --endpoints=2000 --skip-storm",
    "deno task bench:scale --endpoints=2000 --runs=3",
    "deno task bench:scale --hubs=3 --endpoints=3000",
  ],
};

const flags = parseCommandLine(SPEC, Deno.args);
const config: ScaleConfig = {
  endpoints: flags.integer("endpoints"),
  processes: flags.integer("processes"),
  users: flags.integer("users"),
  concurrency: flags.integer("concurrency"),
  idleSeconds: flags.integer("idle-seconds"),
  apiRequests: flags.integer("api-requests"),
  pageSize: flags.integer("page"),
  mib: flags.integer("mib"),
  rtt: flags.integer("rtt"),
  storm: !flags.boolean("skip-storm"),
  timeout: flags.integer("timeout"),
};
const runs = flags.integer("runs");
const quietWait = flags.integer("quiet-wait");
for (const f of SPEC.flags) {
  if (f.kind === "integer" && f.name !== "quiet-wait" && flags.integer(f.name) < 1) {
    console.error(`${SPEC.name}: --${f.name} must be at least 1`);
    Deno.exit(2);
  }
}

// Interrupted, the run's harness never gets to stop what it started: stop it here.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    for (const pid of descendants(Deno.pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    Deno.exit(130);
  });
}

const progress = (m: string) => console.error(`bench:scale: ${m}`);
const results = new Results();
const failures: string[] = [];
const hubs = flags.integer("hubs");

/** Waits up to `--quiet-wait` s until the machine's other processes use under 25 % of a core. */
async function waitForQuiet(run: number): Promise<void> {
  const sampler = new ProcSampler({ system: [SYSTEM], bench: [Deno.pid] }, 250);
  sampler.start();
  const deadline = Date.now() + quietWait * 1000;
  let other = 0;
  try {
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = Date.now();
      const u = sampler.usage(now - 1000, now);
      other = Math.max(0, u.system.cpuPct - u.bench.cpuPct);
      if (other < 25) return;
    }
    if (quietWait > 0) {
      progress(`run ${run}: others still use ${round(other)} % of a core; starting anyway`);
    }
  } finally {
    sampler.stop();
  }
}

if (hubs > 1) {
  await severalHubs();
  Deno.exit(failures.length === runs ? 1 : 0);
}

for (let run = 1; run <= runs; run++) {
  try {
    await waitForQuiet(run);
    await scaleRun(run, config, results, progress);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    failures.push(`run ${run}: ${message}`);
    progress(`run ${run} FAILED: ${message}`);
  }
}

const s = (figure: string) => results.spread(figure, "ztm");
const n = config.endpoints.toLocaleString("en-US");
const both = (label: string, figure: string): string[] => [
  label,
  cell(s(`${figure}.at0`)),
  cell(s(`${figure}.atN`)),
];
const once = (label: string, figure: string): string[] => [label, "", cell(s(figure))];
const rows = [
  once("join all N, s", "join.seconds"),
  once("failed dials while joining", "join.failures"),
  once("SYNs dropped on a full listen queue while joining", "join.listenOverflows"),
  once("hub CPU while joining, % of a core", "join.hubCpuPct"),
  once("hub CPU time per join, ms", "join.hubCpuMsPerEndpoint"),
  once("hub peak RSS while joining, MiB", "join.hubPeakRssMiB"),
  both("hub RSS at rest, MiB", "hub.rssMiB"),
  once("hub RSS per endpoint, KiB", "hub.rssPerEndpointKiB"),
  both("hub CPU at rest, % of a core", "hub.idleCpuPct"),
  both("endpoint-list page p50, ms", "api.pageP50Ms"),
  both("endpoint-list page p99, ms", "api.pageP99Ms"),
  both("service lookup p50, ms", "api.serviceP50Ms"),
  both("service lookup p99, ms", "api.serviceP99Ms"),
  both("real tunnel bulk, MB/s", "tunnel.MBps"),
  both("real tunnel 64 B round trip p50, µs", "tunnel.rttP50Us"),
  both("real tunnel 64 B round trip p99, µs", "tunnel.rttP99Us"),
  once("storm: hub stop, s", "storm.stopSeconds"),
  once("storm: hub down (stop + start), s", "storm.downSeconds"),
  once("storm: all back after the stop, s", "storm.backSeconds"),
  once("storm: failed dials and lost sessions", "storm.failures"),
  once("storm: SYNs dropped on a full listen queue", "storm.listenOverflows"),
  once("storm: hub CPU, % of a core (mean)", "storm.hubCpuPct"),
  once("storm: hub CPU, % of a core (peak 1 s)", "storm.hubPeakCpuPct"),
  once("storm: hub peak RSS, MiB", "storm.hubPeakRssMiB"),
  once("storm: simulators' CPU, % of a core", "storm.simsCpuPct"),
  once("storm: other processes' CPU, % of a core", "storm.otherCpuPct"),
  once("simulators' CPU at rest, % of a core", "sims.idleCpuPct"),
  once("simulators' peak RSS (all), MiB", "sims.peakRssMiB"),
  both("other processes' CPU at rest, % of a core", "other.idleCpuPct"),
].filter((r) => r[2] !== "–" || r[1] !== "–");

/** The issue's targets, checked against the medians. */
const median = (figure: string) => s(figure)?.median;
const targets: [string, number | undefined, (v: number) => boolean][] = [
  ["all N joined within 30 s", median("join.seconds"), (v) => v <= 30],
  ["hub RSS ≤ 1 GiB at N", median("hub.rssMiB.atN"), (v) => v <= 1024],
  ["endpoint-list page p99 ≤ 50 ms at N", median("api.pageP99Ms.atN"), (v) => v <= 50],
  ["hub CPU at rest ≤ 10 % of a core at N", median("hub.idleCpuPct.atN"), (v) => v <= 10],
  ["all N back within 60 s after a restart", median("storm.backSeconds"), (v) => v <= 60],
  [
    "tunnel throughput at N within 20 % of N = 0",
    (median("tunnel.MBps.atN") ?? NaN) / (median("tunnel.MBps.at0") ?? NaN),
    (v) => v >= 0.8,
  ],
];

const machine = describeMachine();
const source = await sourceState(ROOT);
console.log(
  `\n## ztm scale, N = ${n} endpoints, ${runs} run${runs > 1 ? "s (median (min–max))" : ""}\n`,
);
console.log(
  `${machine.cpus} cores, ${machine.cpu}, Linux ${machine.kernel}, Deno ${machine.deno}, ` +
    `${source}; ${config.processes} simulator processes, ${config.users} users\n`,
);
console.log(markdownTable(["metric", "N = 0", `N = ${n}`], rows));
console.log(
  "\n" + markdownTable(
    ["target (medians)", "value", "met"],
    targets.map(([label, v, ok]) => [
      label,
      v === undefined || Number.isNaN(v) ? "–" : String(round(v)),
      v === undefined || Number.isNaN(v) ? "–" : ok(v) ? "yes" : "no",
    ]),
  ),
);
if (failures.length) console.log(`\nFailed:\n${failures.map((f) => `- ${f}`).join("\n")}`);
console.log(
  "\n" + JSON.stringify({
    bench: "ztm scale",
    version: VERSION,
    date: new Date().toISOString(),
    source,
    machine,
    config: { ...config, runs },
    figures: Object.fromEntries(
      Object.entries(figuresJson(results)).map(([k, v]) => [k, v.ztm]),
    ),
    failures,
  }),
);
if (failures.length === runs) Deno.exit(1);

/** `--hubs=H`: per run, N on one hub, then N on each of H hubs; a table with the ratios. */
async function severalHubs(): Promise<void> {
  const hc: HubsConfig = {
    endpoints: config.endpoints,
    processes: config.processes,
    users: config.users,
    concurrency: config.concurrency,
    idleSeconds: config.idleSeconds,
    storm: config.storm,
    timeout: config.timeout,
  };
  for (let run = 1; run <= runs; run++) {
    try {
      for (const count of [1, hubs]) {
        await waitForQuiet(run);
        await hubsRun(run, count, hc, results, progress);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push(`run ${run}: ${message}`);
      progress(`run ${run} FAILED: ${message}`);
    }
  }
  const med = (figure: string) => results.spread(figure, "ztm")?.median;
  const row = (label: string, figure: string): string[] => {
    const one = med(`h1.${figure}`);
    const many = med(`h${hubs}.${figure}`);
    const ratio = one !== undefined && many !== undefined && one !== 0 ? many / one : undefined;
    return [
      label,
      cell(results.spread(`h1.${figure}`, "ztm")),
      cell(results.spread(`h${hubs}.${figure}`, "ztm")),
      ratio === undefined ? "–" : `${round(ratio)} ×`,
    ];
  };
  const rows = [
    row("join: all N on every hub, s", "join.seconds"),
    row("join: failed dials", "join.failures"),
    row("join: SYNs dropped on a full listen queue", "join.listenOverflows"),
    row("join: CPU per hub (mean), % of a core", "join.hubCpuPct"),
    row("join: simulators' CPU, % of a core", "join.simsCpuPct"),
    row("RSS per hub at rest (mean), MiB", "hub.rssMiB"),
    row("RSS per hub at rest (max), MiB", "hub.rssMiBMax"),
    row("RSS of all hubs at rest, MiB", "hubs.rssMiB"),
    row("RSS per hub per endpoint, KiB", "hub.rssPerEndpointKiB"),
    row("CPU per hub at rest (mean), % of a core", "hub.idleCpuPct"),
    row("CPU per hub at rest (max), % of a core", "hub.idleCpuPctMax"),
    row("CPU of all hubs at rest, % of a core", "hubs.idleCpuPct"),
    row("simulators' CPU at rest, % of a core", "sims.idleCpuPct"),
    row("simulators' peak RSS (all), MiB", "sims.peakRssMiB"),
    row("other processes' CPU at rest, % of a core", "other.idleCpuPct"),
    row("storm: hub down (stop + start), s", "storm.downSeconds"),
    row("storm: all back on the restarted hub after the stop, s", "storm.backSeconds"),
    row("storm: restarted hub's CPU, % of a core (mean)", "storm.hubCpuPct"),
    row("storm: restarted hub's CPU, % of a core (peak 1 s)", "storm.hubPeakCpuPct"),
    row("storm: restarted hub's peak RSS, MiB", "storm.hubPeakRssMiB"),
    row("storm: failed dials and lost sessions", "storm.failures"),
    row("storm: simulators' CPU, % of a core", "storm.simsCpuPct"),
    row("storm: other hubs' CPU (mean), % of a core", "storm.otherHubsCpuPct"),
    row("storm: sessions the other hubs lost", "storm.otherHubsLost"),
  ].filter((r) => r[1] !== "–" || r[2] !== "–");
  const machine = describeMachine();
  const source = await sourceState(ROOT);
  console.log(
    `\n## ztm scale, ${hubs} hubs, N = ${
      config.endpoints.toLocaleString("en-US")
    } endpoints each on every hub, ${runs} run${runs > 1 ? "s (median (min–max))" : ""}\n`,
  );
  console.log(
    `${machine.cpus} cores, ${machine.cpu}, Linux ${machine.kernel}, Deno ${machine.deno}, ` +
      `${source}; ${config.processes} simulator processes, ${config.users} users; baseline: ` +
      `the same N on one hub, measured in the same run\n`,
  );
  console.log(markdownTable(["metric", "1 hub", `${hubs} hubs`, "ratio"], rows));
  if (failures.length) console.log(`\nFailed:\n${failures.map((f) => `- ${f}`).join("\n")}`);
  console.log(
    "\n" + JSON.stringify({
      bench: "ztm scale, several hubs",
      version: VERSION,
      date: new Date().toISOString(),
      source,
      machine,
      config: { ...hc, hubs, runs },
      figures: Object.fromEntries(
        Object.entries(figuresJson(results)).map(([k, v]) => [k, v.ztm]),
      ),
      failures,
    }),
  );
}
