/**
 * The scale bench's side of the simulator processes (`scale_sim.ts`): issues
 * the simulated users' certificates through the CA's REST API, starts a few
 * simulator processes that share the endpoints between them, follows their
 * counters, and reads each process's file-descriptor limit (Deno raises its
 * soft limit to the hard one at start; where that is still short, `prlimit`
 * is tried).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { issueUser } from "../tests/fixtures/harness.ts";
import {
  noCounters,
  SIM_SOURCE_ADDRESSES,
  type SimCounters,
  type SimCredentials,
} from "./scale_sim.ts";
import { LOOPBACK } from "./ports.ts";
import type { ProcSampler } from "./proc_stats.ts";

const SIM_ENTRY = fileURLToPath(new URL("./scale_sim.ts", import.meta.url));

/** Issues `count` users (`scale-user-0`…) from the CA at `caUrl` and writes them to a 0600 file in `dir`. */
export async function issueSimUsers(caUrl: string, count: number, dir: string): Promise<string> {
  const users: SimCredentials["users"] = [];
  let ca = "";
  for (let i = 0; i < count; i++) {
    const files = await issueUser(caUrl, `scale-user-${i}`);
    ca = files.ca;
    users.push({ user: files.user, certificate: files.certificate, privateKey: files.privateKey });
  }
  const path = join(dir, "sim-credentials.json");
  Deno.writeTextFileSync(path, JSON.stringify({ ca, users }), { mode: 0o600 });
  return path;
}

/** The soft and hard limit on open files of `pid`, from `/proc/<pid>/limits`. */
export function fdLimit(pid: number): { soft: number; hard: number } | undefined {
  try {
    const line = Deno.readTextFileSync(`/proc/${pid}/limits`).split("\n")
      .find((l) => l.startsWith("Max open files"));
    const [soft, hard] = (line ?? "").slice("Max open files".length).trim().split(/\s+/);
    const n = (s: string) => (s === "unlimited" ? Infinity : Number(s));
    return { soft: n(soft), hard: n(hard) };
  } catch {
    return undefined;
  }
}

/**
 * Makes sure `pid` may open `need` files: raises its soft limit to its hard
 * limit with `prlimit` when short. Returns a line saying what it has.
 */
export async function ensureFdLimit(name: string, pid: number, need: number): Promise<string> {
  let limit = fdLimit(pid);
  if (!limit) return `${name}: open-file limit unknown`;
  if (limit.soft < need && limit.hard > limit.soft) {
    const hard = limit.hard === Infinity ? "unlimited" : String(limit.hard);
    await new Deno.Command("prlimit", {
      args: ["--pid", String(pid), `--nofile=${hard}:${hard}`],
      stdout: "null",
      stderr: "null",
    }).output().catch(() => undefined);
    limit = fdLimit(pid) ?? limit;
  }
  const enough = limit.soft >= need ? "" : ` — short of the ${need} it needs`;
  return `${name}: open-file limit ${limit.soft} (hard ${limit.hard})${enough}`;
}

/**
 * Starts `size.processes` simulators (`Simulators.start`) with `size.endpoints` endpoints,
 * each holding a session with every hub of `ports`; adds their processes to `sampler` as
 * the group `sims`, and raises each one's open-file limit for its sessions, saying each
 * limit through `say`.
 */
export async function startSampledSimulators(
  size: { endpoints: number; processes: number; concurrency: number },
  ports: number[],
  credentials: string,
  sampler: ProcSampler,
  say: (line: string) => void,
): Promise<Simulators> {
  const sims = Simulators.start({
    hubPort: ports[0],
    morePorts: ports.slice(1),
    endpoints: size.endpoints,
    processes: size.processes,
    concurrency: size.concurrency,
    credentials,
  });
  sampler.setGroup("sims", sims.pids);
  for (const [i, p] of sims.procs.entries()) {
    say(await ensureFdLimit(`simulator ${i + 1}`, p.child.pid, p.count * ports.length + 1_000));
  }
  return sims;
}

/** A running simulator process and its latest counters. */
export class SimProcess {
  readonly child: Deno.ChildProcess;
  readonly count: number;
  counters: SimCounters = noCounters();
  /** Its stderr, for failure reports. */
  readonly errors: string[] = [];
  /** Its exit status, once it has exited. */
  exit: Deno.CommandStatus | undefined;
  #done: Promise<unknown>;

  constructor(child: Deno.ChildProcess, count: number) {
    this.child = child;
    this.count = count;
    child.status.then((s) => (this.exit = s));
    this.#done = Promise.allSettled([this.#readCounters(), this.#readErrors()]);
  }

  async #readCounters(): Promise<void> {
    let buf = "";
    for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.counters = JSON.parse(line);
        } catch { /* not a counter line */ }
      }
    }
  }

  async #readErrors(): Promise<void> {
    for await (const chunk of this.child.stderr.pipeThrough(new TextDecoderStream())) {
      this.errors.push(chunk);
      if (this.errors.length > 50) this.errors.shift();
    }
  }

  /** Kills it and waits for its output to drain. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.child.status;
    await this.#done;
  }
}

/** Simulator processes sharing `endpoints` between them. */
export class Simulators implements AsyncDisposable {
  readonly procs: SimProcess[] = [];

  /**
   * Starts `processes` simulators against the hub on 127.0.0.1:`hubPort`
   * (and every hub of `morePorts`: each endpoint holds a session with each),
   * `endpoints` in all, each dialling at most `concurrency` at a time at first.
   */
  static start(opts: {
    hubPort: number;
    morePorts?: number[];
    endpoints: number;
    processes: number;
    concurrency: number;
    credentials: string;
  }): Simulators {
    const sims = new Simulators();
    const per = Math.ceil(opts.endpoints / opts.processes);
    for (let first = 0; first < opts.endpoints; first += per) {
      const count = Math.min(per, opts.endpoints - first);
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-net=${[LOOPBACK, ...SIM_SOURCE_ADDRESSES].join(",")}`,
          `--allow-read=${opts.credentials}`,
          SIM_ENTRY,
          `--ports=${[opts.hubPort, ...(opts.morePorts ?? [])].join(",")}`,
          `--first=${first}`,
          `--count=${count}`,
          `--concurrency=${opts.concurrency}`,
          `--credentials=${opts.credentials}`,
        ],
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      sims.procs.push(new SimProcess(child, count));
    }
    return sims;
  }

  /** Process ids, for the CPU/RSS sampler. */
  get pids(): number[] {
    return this.procs.map((p) => p.child.pid);
  }

  /** Sessions connected right now (endpoints × hubs), summed over the processes. */
  get connected(): number {
    return this.procs.reduce((n, p) => n + p.counters.connected, 0);
  }

  /** Endpoints connected right now to the hub on `port`, summed over the processes. */
  connectedTo(port: number): number {
    return this.procs.reduce((n, p) => n + (p.counters.byPort?.[port] ?? 0), 0);
  }

  /** Summed counters. */
  totals(): SimCounters {
    const t = noCounters();
    for (const p of this.procs) {
      t.connected += p.counters.connected;
      for (const [port, n] of Object.entries(p.counters.byPort ?? {})) {
        t.byPort[port] = (t.byPort[port] ?? 0) + n;
      }
      t.joins += p.counters.joins;
      t.failures += p.counters.failures;
      t.refused += p.counters.refused;
      for (const [cause, n] of Object.entries(p.counters.causes)) {
        t.causes[cause] = (t.causes[cause] ?? 0) + n;
      }
    }
    return t;
  }

  /** Throws with a simulator's stderr if one has exited. */
  checkAlive(): void {
    for (const p of this.procs) {
      if (p.exit) {
        throw new Error(`a simulator exited (${p.exit.code}): ${p.errors.join("").slice(-2000)}`);
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
  }
}
