/**
 * One run of the scale bench: a fresh CA, hub and two real agents
 * (`mesh.ts`), figures at N = 0, then N simulated endpoints
 * (`scale_sims.ts`), the same figures at N, and a reconnect storm (the hub
 * process stopped and started again on the same port and data dir with the N
 * attached).
 *
 * Figures go into a `Results` under path "ztm", named `<figure>.at0` or
 * `<figure>.atN` where both are measured. Progress goes to `progress`.
 */
import { api, Harness, issueUser, type Proc } from "../tests/fixtures/harness.ts";
import { HubClient, userTls } from "../tests/fixtures/hub_client.ts";
import { runLoad } from "./load.ts";
import { warmUp } from "./measurements.ts";
import { MESH, type MeshPath, startMesh } from "./mesh.ts";
import { ProcSampler, type ProcUsage, readProc, SYSTEM } from "./proc_stats.ts";
import { Results, round } from "./report.ts";
import {
  ensureFdLimit,
  issueSimUsers,
  type Simulators,
  startSampledSimulators,
} from "./scale_sims.ts";

/** Sizes of one run. */
export interface ScaleConfig {
  endpoints: number;
  processes: number;
  users: number;
  concurrency: number;
  idleSeconds: number;
  apiRequests: number;
  pageSize: number;
  mib: number;
  rtt: number;
  storm: boolean;
  /** Seconds to wait for all endpoints to join, and again to come back after the restart. */
  timeout: number;
}

/** The figures' single column in `Results`. */
const Z = "ztm";

/** Mutual-TLS client material for asking the hub its status. */
export type Tls = ReturnType<typeof userTls>;

/** The hub's `online` count, through a fresh session (the hub may have restarted). */
export async function hubOnline(port: number, tls: Tls): Promise<number | undefined> {
  const client = HubClient.connect(port, tls);
  try {
    const reply = await client.request("GET", "/api/status", { timeoutMs: 5_000 });
    return reply.status === 200 ? Number(JSON.parse(reply.text).online) : undefined;
  } catch {
    return undefined;
  } finally {
    await client.close();
  }
}

/** CPU (% of a core) the machine spent outside the bench's processes: other engineers' work. */
export function otherCpu(usage: Record<string, ProcUsage>): number {
  const known = Object.entries(usage).filter(([k]) => k !== "system")
    .reduce((n, [, u]) => n + u.cpuPct, 0);
  return Math.max(0, usage.system.cpuPct - known);
}

/**
 * The kernel's count of connections dropped because a listen queue was full
 * (`ListenOverflows` in `/proc/net/netstat`), machine-wide; undefined off Linux.
 */
export function listenOverflows(): number | undefined {
  try {
    const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n")
      .filter((l) => l.startsWith("TcpExt:"));
    const names = lines[0].split(/\s+/);
    return Number(lines[1].split(/\s+/)[names.indexOf("ListenOverflows")]);
  } catch {
    return undefined;
  }
}

/** p50 and p99 of `ms`, in ms. */
function percentiles(ms: number[]): { p50: number; p99: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { p50: at(0.5), p99: at(0.99) };
}

/** Times `n` sequential agent API GETs of `path(i)`; throws on a non-200. */
async function timeApi(
  agentUrl: string,
  n: number,
  path: (i: number) => string,
): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = path(i);
    const t = performance.now();
    const res = await api(agentUrl, "GET", p);
    ms.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`GET ${p}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return percentiles(ms);
}

/** Polls every 250 ms until `check` is true; returns when, or throws naming `what`. */
export async function until(
  what: string,
  timeoutS: number,
  check: () => Promise<boolean> | boolean,
) {
  const deadline = Date.now() + timeoutS * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutS} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return Date.now();
}

/** One run; adds its figures to `results`. */
export async function scaleRun(
  run: number,
  c: ScaleConfig,
  results: Results,
  progress: (m: string) => void,
): Promise<void> {
  await using h = new Harness();
  const say = (m: string) => progress(`run ${run}: ${m}`);
  const add = (figure: string, v: number) => {
    results.add(figure, Z, v);
  };
  say("starting a CA, a hub, two agents and an echo server");
  const echo = await h.spawnService("echo", "bench/echo_server.ts", ["--listen=127.0.0.1:0"]);
  const mesh = await startMesh(h, { echo: echo.port });
  const tunnelPort = mesh.ports.get(echo.port)!;
  const dir = await h.tempDir("ztm-scale-");
  const credentials = await issueSimUsers(mesh.ca.url, c.users, dir);
  const watch = userTls(await issueUser(mesh.ca.url, "scale-watch"));
  const agents = [mesh.agentA.child.pid, mesh.agentB.child.pid];
  const sampler = new ProcSampler({
    hub: [mesh.hub.child.pid],
    agents,
    bench: [Deno.pid, echo.child.pid],
    system: [SYSTEM],
  }, 250);
  sampler.start();
  try {
    say(await ensureFdLimit("hub", mesh.hub.child.pid, c.endpoints + 1_000));
    await warmUp(tunnelPort);
    const rss0 = await measureAt("0", mesh, c, tunnelPort, sampler, add, say);

    say(`starting ${c.processes} simulators with ${c.endpoints} endpoints`);
    const started = Date.now();
    const overflowsBefore = listenOverflows();
    sampler.resetPeaks();
    await using sims = await startSampledSimulators(c, [mesh.hub.port], credentials, sampler, say);
    let shown = 0;
    const joined = await until(`${c.endpoints} endpoints joined`, c.timeout, () => {
      sims.checkAlive();
      const n = sims.connected;
      if (n - shown >= c.endpoints / 10) {
        say(`${n} joined after ${round((Date.now() - started) / 1000)} s`);
        shown = n;
      }
      return n >= c.endpoints;
    });
    const online = await hubOnline(mesh.hub.port, watch);
    if (online !== c.endpoints + 2) {
      throw new Error(`the hub counts ${online} endpoints online, not ${c.endpoints + 2}`);
    }
    const joinS = (joined - started) / 1000;
    add("join.listenOverflows", (listenOverflows() ?? NaN) - (overflowsBefore ?? NaN));
    add("join.seconds", joinS);
    const joinUsage = sampler.usage(started, joined);
    add("join.hubCpuPct", joinUsage.hub.cpuPct);
    // CPU time per join is steadier than join time on a shared machine.
    add("join.hubCpuMsPerEndpoint", joinUsage.hub.cpuPct / 100 * joinS * 1000 / c.endpoints);
    add("join.hubPeakRssMiB", joinUsage.hub.rssPeakKiB / 1024);
    say(
      `all ${c.endpoints} joined in ${round(joinS)} s (hub ${round(joinUsage.hub.cpuPct)} % ` +
        `of a core, peak ${round(joinUsage.hub.rssPeakKiB / 1024)} MiB)`,
    );
    await new Promise((r) => setTimeout(r, 5_000)); // let joins' garbage be collected
    const rssN = await measureAt("N", mesh, c, tunnelPort, sampler, add, say);
    add("hub.rssPerEndpointKiB", (rssN - rss0) * 1024 / c.endpoints);
    const beforeStorm = sims.totals();
    add("join.failures", beforeStorm.failures);
    if (beforeStorm.failures) say(`failures while joining: ${JSON.stringify(beforeStorm.causes)}`);
    if (c.storm) {
      await storm(h, mesh, c, sims, sampler, watch, add, say);
      const after = sims.totals();
      add("storm.failures", after.failures - beforeStorm.failures);
      const causes = Object.entries(after.causes)
        .map(([k, n]) => [k, n - (beforeStorm.causes[k] ?? 0)] as const).filter(([, n]) => n > 0);
      say(
        `failed dials and lost sessions in the storm: ${
          JSON.stringify(Object.fromEntries(causes))
        }`,
      );
    }
    const simUsage = sampler.usage(started, Date.now());
    add("sims.cpuPct", simUsage.sims.cpuPct);
    add("sims.peakRssMiB", simUsage.sims.rssPeakKiB / 1024);
  } finally {
    sampler.stop();
  }
}

/** Steady-state figures with whatever is attached now, suffixed `at` ("0" or "N"); returns the hub's RSS, MiB. */
async function measureAt(
  at: string,
  mesh: MeshPath,
  c: ScaleConfig,
  tunnelPort: number,
  sampler: ProcSampler,
  add: (figure: string, v: number) => void,
  say: (m: string) => void,
): Promise<number> {
  const hubPid = mesh.hub.child.pid;
  const label = `N=${at === "0" ? 0 : c.endpoints}`;
  const from = Date.now();
  await new Promise((r) => setTimeout(r, c.idleSeconds * 1000));
  const idle = sampler.usage(from, Date.now());
  const other = otherCpu(idle);
  add(`hub.idleCpuPct.at${at}`, idle.hub.cpuPct);
  add(`other.idleCpuPct.at${at}`, other);
  if (idle.sims) add(`sims.idleCpuPct`, idle.sims.cpuPct);
  const rss = (readProc(hubPid)?.rssKiB ?? NaN) / 1024;
  add(`hub.rssMiB.at${at}`, rss);
  say(
    `${label}: hub idle ${round(idle.hub.cpuPct)} % of a core, RSS ${round(rss)} MiB` +
      ` (others on the machine: ${round(other)} %)`,
  );

  const base = `/api/meshes/${MESH}`;
  const total = (await api(mesh.agentA.url, "GET", `${base}/endpoints?limit=1`)).body.total;
  const page = await timeApi(
    mesh.agentA.url,
    c.apiRequests,
    () => `${base}/endpoints?offset=${Math.floor(Math.random() * total)}&limit=${c.pageSize}`,
  );
  add(`api.pageP50Ms.at${at}`, page.p50);
  add(`api.pageP99Ms.at${at}`, page.p99);
  const service = await timeApi(
    mesh.agentA.url,
    c.apiRequests,
    (i) => `${base}/services?q=${i % 2 ? "echo" : `db-${i % 100}`}&limit=${c.pageSize}`,
  );
  add(`api.serviceP50Ms.at${at}`, service.p50);
  add(`api.serviceP99Ms.at${at}`, service.p99);
  say(
    `${label}: endpoint page (${total} endpoints) p50 ${round(page.p50)} ms, ` +
      `p99 ${round(page.p99)} ms; service lookup p50 ${round(service.p50)} ms, ` +
      `p99 ${round(service.p99)} ms`,
  );

  const bytes = c.mib * 1024 * 1024;
  const bulk = await runLoad(
    { mode: "bulk", port: tunnelPort, bytes, connections: 1 },
    30_000 + Math.ceil(bytes / 10e6) * 1000,
  );
  const rtt = await runLoad(
    { mode: "rtt", port: tunnelPort, count: c.rtt, warmup: 200, size: 64 },
    60_000,
  );
  add(`tunnel.MBps.at${at}`, bulk.MBps!);
  add(`tunnel.rttP50Us.at${at}`, rtt.p50Us!);
  add(`tunnel.rttP99Us.at${at}`, rtt.p99Us!);
  say(
    `${label}: tunnel ${round(bulk.MBps!)} MB/s, 64 B round trip p50 ${round(rtt.p50Us!)} µs, ` +
      `p99 ${round(rtt.p99Us!)} µs`,
  );
  return rss;
}

/** Restarts the hub with everything attached; figures `storm.*`. */
async function storm(
  h: Harness,
  mesh: MeshPath,
  c: ScaleConfig,
  sims: Simulators,
  sampler: ProcSampler,
  watch: Tls,
  add: (figure: string, v: number) => void,
  say: (m: string) => void,
): Promise<void> {
  const want = c.endpoints + 2;
  say("reconnect storm: stopping the hub");
  const overflowsBefore = listenOverflows();
  const stopped = Date.now();
  await mesh.hub.stop();
  add("storm.stopSeconds", (Date.now() - stopped) / 1000);
  const hub: Proc = await h.startHub(mesh.ca, {
    dir: mesh.hub.dir,
    args: [`--listen=127.0.0.1:${mesh.hub.port}`],
  });
  const listening = Date.now();
  sampler.setGroup("hub", [hub.child.pid]);
  sampler.resetPeaks();
  say(await ensureFdLimit("restarted hub", hub.child.pid, c.endpoints + 1_000));
  let shown = 0;
  const back = await until(`${c.endpoints} endpoints back after the restart`, c.timeout, () => {
    sims.checkAlive();
    const n = sims.connected;
    if (n - shown >= c.endpoints / 10) {
      say(`${n} back after ${round((Date.now() - stopped) / 1000)} s`);
      shown = n;
    }
    return n >= c.endpoints;
  });
  const allBack = await until(
    "the hub counting every endpoint online",
    c.timeout,
    async () => (await hubOnline(mesh.hub.port, watch)) === want,
  );
  const usage = sampler.usage(listening, back);
  let peakCpu = 0;
  for (let t = listening; t + 1000 <= back; t += 500) {
    peakCpu = Math.max(peakCpu, sampler.usage(t, t + 1000).hub.cpuPct);
  }
  add("storm.backSeconds", (back - stopped) / 1000);
  add("storm.listenOverflows", (listenOverflows() ?? NaN) - (overflowsBefore ?? NaN));
  add("storm.downSeconds", (listening - stopped) / 1000);
  add("storm.allOnlineSeconds", (allBack - stopped) / 1000);
  add("storm.hubCpuPct", usage.hub.cpuPct);
  add("storm.hubPeakCpuPct", peakCpu);
  add("storm.hubPeakRssMiB", usage.hub.rssPeakKiB / 1024);
  add("storm.simsCpuPct", usage.sims.cpuPct);
  const other = otherCpu(usage);
  add("storm.otherCpuPct", other);
  say(
    `all ${c.endpoints} back ${round((back - stopped) / 1000)} s after the stop ` +
      `(hub down ${round((listening - stopped) / 1000)} s); hub ${round(usage.hub.cpuPct)} % ` +
      `of a core on average, ${round(peakCpu)} % peak (1 s), peak RSS ${
        round(usage.hub.rssPeakKiB / 1024)
      } MiB; simulators ${round(usage.sims.cpuPct)} %, others ${round(other)} %`,
  );
}
