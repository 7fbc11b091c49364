/**
 * One run of `deno task bench:scale --hubs=H`: a fresh CA and H hubs, N
 * simulated endpoints (`scale_sim.ts`) each holding a session with every hub,
 * as an agent joined with H bootstraps does (`agent/hubs.ts`); the time until
 * every hub has all N, each hub's RSS and CPU at rest, and a reconnect storm:
 * the first hub stopped and started again on its port and data dir while the
 * others keep their sessions.
 *
 * No real agents or tunnels here: the single-hub bench (`scale_run.ts`)
 * measures those. Figures go into a `Results` under path "ztm", named
 * `h<H>.<figure>`, so a run with one hub and a run with H hubs sit side by
 * side for ratios. Progress goes to `progress`.
 */
import { Harness, issueUser } from "../tests/fixtures/harness.ts";
import { userTls } from "../tests/fixtures/hub_client.ts";
import { ProcSampler, readProc, SYSTEM } from "./proc_stats.ts";
import { type Results, round } from "./report.ts";
import { hubOnline, listenOverflows, otherCpu, until } from "./scale_run.ts";
import {
  ensureFdLimit,
  issueSimUsers,
  type Simulators,
  startSampledSimulators,
} from "./scale_sims.ts";

/** Sizes of one multi-hub run. */
export interface HubsConfig {
  /** Simulated endpoints, each on every hub. */
  endpoints: number;
  processes: number;
  users: number;
  concurrency: number;
  idleSeconds: number;
  storm: boolean;
  /** Seconds to wait for all to join, and again to come back after the restart. */
  timeout: number;
}

type HubProc = Awaited<ReturnType<Harness["startHub"]>>;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** One run with `hubs` hubs; adds `h<hubs>.*` figures to `results`. */
export async function hubsRun(
  run: number,
  hubs: number,
  c: HubsConfig,
  results: Results,
  progress: (m: string) => void,
): Promise<void> {
  await using h = new Harness();
  const say = (m: string) => progress(`run ${run}, ${hubs} hub${hubs > 1 ? "s" : ""}: ${m}`);
  const add = (figure: string, v: number) => results.add(`h${hubs}.${figure}`, "ztm", v);
  say(`starting a CA and ${hubs} hub${hubs > 1 ? "s" : ""}`);
  const ca = await h.startCa();
  const procs: HubProc[] = [];
  for (let i = 0; i < hubs; i++) procs.push(await h.startHub(ca));
  const ports = procs.map((p) => p.port);
  const dir = await h.tempDir("ztm-scale-hubs-");
  const credentials = await issueSimUsers(ca.url, c.users, dir);
  const watch = userTls(await issueUser(ca.url, "scale-watch"));
  const hubGroups = () => Object.fromEntries(procs.map((p, i) => [`hub${i}`, [p.child.pid]]));
  const sampler = new ProcSampler({ ...hubGroups(), bench: [Deno.pid], system: [SYSTEM] }, 250);
  sampler.start();
  try {
    for (const [i, p] of procs.entries()) {
      say(await ensureFdLimit(`hub ${i}`, p.child.pid, c.endpoints + 1_000));
    }
    const rss0 = procs.map((p) => (readProc(p.child.pid)?.rssKiB ?? NaN) / 1024);

    say(`starting ${c.processes} simulators: ${c.endpoints} endpoints, each on every hub`);
    const started = Date.now();
    const overflowsBefore = listenOverflows();
    sampler.resetPeaks();
    await using sims = await startSampledSimulators(c, ports, credentials, sampler, say);
    let shown = 0;
    const joined = await until(`${c.endpoints} endpoints on ${hubs} hubs`, c.timeout, () => {
      sims.checkAlive();
      const n = sims.connected;
      if (n - shown >= c.endpoints * hubs / 10) {
        say(`${n} sessions after ${round((Date.now() - started) / 1000)} s`);
        shown = n;
      }
      return ports.every((p) => sims.connectedTo(p) >= c.endpoints);
    });
    for (const [i, port] of ports.entries()) {
      const online = await hubOnline(port, watch);
      if (online !== c.endpoints) {
        throw new Error(`hub ${i} counts ${online} endpoints online, not ${c.endpoints}`);
      }
    }
    const joinS = (joined - started) / 1000;
    add("join.seconds", joinS);
    add("join.listenOverflows", (listenOverflows() ?? NaN) - (overflowsBefore ?? NaN));
    const joinUsage = sampler.usage(started, joined);
    const joinCpu = procs.map((_, i) => joinUsage[`hub${i}`].cpuPct);
    add("join.hubCpuPct", mean(joinCpu));
    add("join.simsCpuPct", joinUsage.sims.cpuPct);
    say(
      `all ${c.endpoints} on every hub in ${round(joinS)} s (hubs ${
        joinCpu.map(round).join(", ")
      } % of a core; simulators ${round(joinUsage.sims.cpuPct)} %)`,
    );
    add("join.failures", sims.totals().failures);

    await new Promise((r) => setTimeout(r, 5_000)); // let joins' garbage be collected
    const from = Date.now();
    await new Promise((r) => setTimeout(r, c.idleSeconds * 1000));
    const idle = sampler.usage(from, Date.now());
    const idleCpu = procs.map((_, i) => idle[`hub${i}`].cpuPct);
    const rss = procs.map((p) => (readProc(p.child.pid)?.rssKiB ?? NaN) / 1024);
    add("hub.idleCpuPct", mean(idleCpu));
    add("hub.idleCpuPctMax", Math.max(...idleCpu));
    add("hubs.idleCpuPct", idleCpu.reduce((a, b) => a + b, 0));
    add("hub.rssMiB", mean(rss));
    add("hub.rssMiBMax", Math.max(...rss));
    add("hubs.rssMiB", rss.reduce((a, b) => a + b, 0));
    add("hub.rssPerEndpointKiB", mean(rss.map((r, i) => (r - rss0[i]) * 1024 / c.endpoints)));
    add("sims.idleCpuPct", idle.sims.cpuPct);
    add("other.idleCpuPct", otherCpu(idle));
    say(
      `at rest: hubs ${idleCpu.map(round).join(", ")} % of a core, RSS ${
        rss.map(round).join(", ")
      } MiB; simulators ${round(idle.sims.cpuPct)} %; others ${round(otherCpu(idle))} %`,
    );

    if (c.storm) await storm(h, procs, ca, c, sims, sampler, watch, add, say);
    const simUsage = sampler.usage(started, Date.now());
    add("sims.peakRssMiB", simUsage.sims.rssPeakKiB / 1024);
  } finally {
    sampler.stop();
  }
}

/** Restarts the first hub with everything attached; figures `storm.*`. */
async function storm(
  h: Harness,
  procs: HubProc[],
  ca: Awaited<ReturnType<Harness["startCa"]>>,
  c: HubsConfig,
  sims: Simulators,
  sampler: ProcSampler,
  watch: ReturnType<typeof userTls>,
  add: (figure: string, v: number) => void,
  say: (m: string) => void,
): Promise<void> {
  const first = procs[0];
  const others = procs.slice(1).map((p) => p.port);
  say("reconnect storm: stopping hub 0");
  const before = sims.totals();
  const stopped = Date.now();
  await first.stop();
  const hub = await h.startHub(ca, { dir: first.dir, args: [`--listen=127.0.0.1:${first.port}`] });
  const listening = Date.now();
  sampler.setGroup("hub0", [hub.child.pid]);
  sampler.resetPeaks();
  say(await ensureFdLimit("restarted hub 0", hub.child.pid, c.endpoints + 1_000));
  let shown = 0;
  // The other hubs must keep every session meanwhile.
  let othersMin = Infinity;
  const back = await until(`${c.endpoints} endpoints back on hub 0`, c.timeout, () => {
    sims.checkAlive();
    for (const p of others) othersMin = Math.min(othersMin, sims.connectedTo(p));
    const n = sims.connectedTo(first.port);
    if (n - shown >= c.endpoints / 10) {
      say(`${n} back after ${round((Date.now() - stopped) / 1000)} s`);
      shown = n;
    }
    return n >= c.endpoints;
  });
  await until(
    "the restarted hub counting every endpoint online",
    c.timeout,
    async () => (await hubOnline(first.port, watch)) === c.endpoints,
  );
  const usage = sampler.usage(listening, back);
  let peakCpu = 0;
  for (let t = listening; t + 1000 <= back; t += 500) {
    peakCpu = Math.max(peakCpu, sampler.usage(t, t + 1000).hub0.cpuPct);
  }
  const othersCpu = procs.slice(1).map((_, i) => usage[`hub${i + 1}`].cpuPct);
  add("storm.downSeconds", (listening - stopped) / 1000);
  add("storm.backSeconds", (back - stopped) / 1000);
  add("storm.hubCpuPct", usage.hub0.cpuPct);
  add("storm.hubPeakCpuPct", peakCpu);
  add("storm.hubPeakRssMiB", usage.hub0.rssPeakKiB / 1024);
  add("storm.simsCpuPct", usage.sims.cpuPct);
  const after = sims.totals();
  add("storm.failures", after.failures - before.failures);
  const causes = Object.entries(after.causes)
    .map(([k, n]) => [k, n - (before.causes[k] ?? 0)] as const).filter(([, n]) => n > 0);
  say(`failed dials and lost sessions in the storm: ${JSON.stringify(Object.fromEntries(causes))}`);
  if (others.length) {
    add("storm.otherHubsCpuPct", mean(othersCpu));
    add("storm.otherHubsLost", c.endpoints - othersMin);
  }
  say(
    `all ${c.endpoints} back on hub 0 ${round((back - stopped) / 1000)} s after the stop ` +
      `(down ${round((listening - stopped) / 1000)} s); hub 0 ${round(usage.hub0.cpuPct)} % ` +
      `of a core on average, ${round(peakCpu)} % peak (1 s)` +
      (others.length
        ? `; other hubs ${othersCpu.map(round).join(", ")} %, sessions they lost meanwhile: ${
          c.endpoints - othersMin
        }`
        : ""),
  );
}
