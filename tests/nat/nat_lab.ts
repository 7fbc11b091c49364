/**
 * A network-namespace lab with real kernel NAT and firewalls, for running
 * the real CA, hub and agents as if on separate hosts:
 *
 * ```
 *               internet 198.51.100.0/24 (a bridge; the CA and the hub on .1)
 *                 │                                   │
 *     home router .11                       office router .12
 *   (masquerade, no inbound)              (masquerade, no inbound)
 *                 │ 10.1.0.0/24                        │ 10.2.0.0/24 (a bridge)
 *        home 10.1.0.2                    office 10.2.0.2     service 10.2.0.3
 * ```
 *
 * Each router masquerades what leaves its WAN side and forwards nothing
 * inbound that is not part of a flow a LAN host started; it treats TCP
 * packets it has no state for as invalid (`nf_conntrack_tcp_loose=0`), like a
 * NAT box that lost its table, so flushing its conntrack table silently
 * blackholes every established flow in both directions — no FIN, no RST.
 * The internet host routes the private subnets at the routers, so a refused
 * inbound connection is refused by the firewall, not by a missing route.
 *
 * Every namespace is named `ztmnat-<pid>-<tag>-<host>`, so concurrent runs
 * (other worktrees, other engineers) never collide; veths are created inside
 * the namespaces, so their short names never meet in the root namespace. A
 * new lab first removes the namespaces of runs whose process is gone (a
 * crashed or killed run), and removes its own on `close()`. `deno test` owns
 * SIGINT and exits at once on Ctrl-C (no listener or `finally` runs), so a
 * lab also starts a watchdog in its own session (`setsid`, untouched by the
 * terminal's Ctrl-C) that removes the lab, and kills what runs in it, as soon
 * as the test process is gone. Addresses exist only inside these namespaces.
 *
 * It needs Linux, root, `ip`, `iptables`, `conntrack` and `curl`;
 * {@link labUnavailable} says what is missing. What runs in the lab (the
 * mesh, the test's checks) is the test's business.
 *
 * @example
 * ```ts
 * await using lab = await NatLab.create();
 * const hub = lab.spawn("internet", "hub", "hub/main.ts", ["--ca=127.0.0.1:9999"]);
 * await lab.flushRouterState("homeRouter");
 * ```
 */
import { componentRunArgs, type Proc, run, startProc } from "../fixtures/harness.ts";

/** Every lab namespace name starts with this. */
export const LAB_PREFIX = "ztmnat-";

/** The hosts of the lab. */
export type Host = "internet" | "homeRouter" | "home" | "officeRouter" | "office" | "officeService";

/** The two NAT routers. */
export type Router = "homeRouter" | "officeRouter";

/** Addresses inside the lab (documentation and private ranges, in lab namespaces only). */
export const LAB_ADDRESSES = {
  /** The CA's and the hub's host. */
  internet: "198.51.100.1",
  /** The home router's public (WAN) address. */
  homeRouter: "198.51.100.11",
  /** The office router's public (WAN) address. */
  officeRouter: "198.51.100.12",
  home: "10.1.0.2",
  office: "10.2.0.2",
  officeService: "10.2.0.3",
} as const;

const NS_SUFFIX: Record<Host, string> = {
  internet: "inet",
  homeRouter: "hrtr",
  home: "home",
  officeRouter: "ortr",
  office: "office",
  officeService: "osvc",
};

/** Links of each router, brought down and up by a reboot (bridge ports too). */
const ROUTER_LINKS: Record<Router, string[]> = {
  homeRouter: ["wan", "lan"],
  officeRouter: ["wan", "lan", "p-agent", "p-svc"],
};

/**
 * The firewall of both routers (`iptables-restore` input): masquerade out of
 * `wan`; forward only flows started on the LAN side; the router itself
 * accepts nothing new.
 */
const ROUTER_RULES = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i lan -o wan -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i lan -o lan -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan -j MASQUERADE
COMMIT
`;

/** The programs the lab runs. */
const TOOLS = ["ip", "tc", "iptables-restore", "conntrack", "curl", "setsid"];

/**
 * The watchdog (`sh -c WATCHDOG sh <pid> <namespace prefix>`): waits while
 * the test process lives and the lab exists, then kills every process in the
 * lab's namespaces and deletes them.
 */
const WATCHDOG = `
while kill -0 "$1" 2>/dev/null && [ -e "/run/netns/$2-inet" ]; do sleep 0.5; done
for ns in $(ip netns list | cut -d' ' -f1 | grep "^$2-"); do
  for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null; done
  ip netns del "$ns"
done`;

/**
 * Why the lab cannot run on this machine, or undefined when it can (root,
 * Linux, the tools, and a namespace with NAT rules can really be made).
 */
export async function labUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "needs Linux network namespaces";
  if (Deno.uid() !== 0) return "needs root (network namespaces, iptables)";
  for (const tool of TOOLS) {
    if (!(await onPath(tool))) {
      return `needs ${tool} (apt-get install -y iproute2 iptables conntrack curl)`;
    }
  }
  const probe = `${LAB_PREFIX}${Deno.pid}-probe`;
  try {
    await run("ip", ["netns", "add", probe]);
    await run("ip", ["netns", "exec", probe, "iptables-restore"], { stdin: ROUTER_RULES });
  } catch (err) {
    return `cannot make a network namespace with NAT rules here: ${firstLine(err)}`;
  } finally {
    await run("ip", ["netns", "del", probe], { allowFail: true });
  }
  return undefined;
}

async function onPath(program: string): Promise<boolean> {
  const res = await run("sh", ["-c", `command -v ${program}`], { allowFail: true });
  return res.code === 0;
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split("\n").slice(0, 2).join(" ").trim();
}

/**
 * Removes the namespaces of lab runs whose process has exited (and kills
 * what still runs in them); returns their names. Namespaces of live runs are
 * left alone.
 */
export async function removeLeftoverLabs(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await labNamespaces()) {
    const pid = Number(name.slice(LAB_PREFIX.length).split("-")[0]);
    if (pid === Deno.pid || isLiveDeno(pid)) continue;
    await removeNamespace(name);
    removed.push(name);
  }
  return removed;
}

/** Names of every lab namespace on the machine. */
export async function labNamespaces(): Promise<string[]> {
  const { stdout } = await run("ip", ["netns", "list"]);
  return stdout.split("\n").map((l) => l.split(" ")[0]).filter((n) => n.startsWith(LAB_PREFIX));
}

/** True if `pid` is a running Deno process (a pid reused by another program does not count). */
function isLiveDeno(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes("deno");
  } catch {
    return false;
  }
}

/** Kills every process inside namespace `name`, then deletes it (and with it its links). */
async function removeNamespace(name: string): Promise<void> {
  const { stdout } = await run("ip", ["netns", "pids", name], { allowFail: true });
  for (const pid of stdout.split("\n").map(Number).filter((p) => p > 0)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
  await run("ip", ["netns", "del", name], { allowFail: true });
}

/** The state of a process's resources, from `/proc`. */
export interface ProcessFootprint {
  /** Open file descriptors. */
  fds: number;
  /** Of which sockets. */
  sockets: number;
  /** Resident set size, bytes. */
  rss: number;
}

/** Reads the open descriptors and RSS of process `pid` from `/proc`. */
export function footprint(pid: number): ProcessFootprint {
  let fds = 0;
  let sockets = 0;
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    fds++;
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`).startsWith("socket:")) sockets++;
    } catch { /* closed meanwhile */ }
  }
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
  return { fds, sockets, rss: rssKb * 1024 };
}

/** Result of `curl` run inside a lab host. */
export interface CurlResult {
  /** curl's exit code (0 when an HTTP answer arrived; 7 refused, 28 timed out). */
  code: number;
  /** The HTTP status, 0 when none arrived. */
  status: number;
  body: string;
  stderr: string;
}

/**
 * Registers the NAT lab test `name`: skipped, with the reason, where the lab cannot be built
 * here, unless `CI=true` or `ZTM_NAT_LAB=required` asks for it (then that is a failure). `fn`
 * runs with a fresh lab, torn down after it.
 */
export async function natLabTest(
  name: string,
  fn: (t: Deno.TestContext, lab: NatLab) => Promise<void>,
): Promise<void> {
  const reason = await labUnavailable();
  const required = Deno.env.get("CI") === "true" || Deno.env.get("ZTM_NAT_LAB") === "required";
  if (reason && !required) {
    console.warn(`nat lab skipped: ${reason}`);
    Deno.test({ name: `${name} (skipped: ${reason})`, ignore: true, fn() {} });
    return;
  }
  Deno.test(name, async (t) => {
    if (reason) throw new Error(`the NAT lab is required here but cannot run: ${reason}`);
    await using lab = await NatLab.create();
    await fn(t, lab);
  });
}

/** The lab: its namespaces, links, firewalls, and the processes started in it. */
export class NatLab implements AsyncDisposable {
  /** A tag unique to this lab: `<pid>-<random>`. */
  readonly tag: string;
  /** A temp dir for the processes' files, removed by `close()`. */
  readonly dir: string;
  #procs: Proc[] = [];
  #made: string[] = [];
  #closing: Promise<void> | undefined;
  #watchdog: Deno.ChildProcess | undefined;

  private constructor() {
    this.tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 4)}`;
    this.dir = Deno.makeTempDirSync({ prefix: "ztm-nat-" });
  }

  /**
   * Removes leftovers of dead runs, then builds the lab. Throws (after
   * removing what it made) if any step fails.
   */
  static async create(): Promise<NatLab> {
    await removeLeftoverLabs();
    const lab = new NatLab();
    try {
      await lab.#build();
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  /** The namespace name of `host`. */
  ns(host: Host): string {
    return `${LAB_PREFIX}${this.tag}-${NS_SUFFIX[host]}`;
  }

  /** Runs `cmd args` inside `host` (see `run` in harness.ts for `opts`). */
  exec(
    host: Host,
    cmd: string,
    args: string[],
    opts: { stdin?: string; allowFail?: boolean } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return run("ip", ["netns", "exec", this.ns(host), cmd, ...args], opts);
  }

  /** Runs `ip args` against `host`'s namespace. */
  #ip(host: Host, ...args: string[]): Promise<unknown> {
    return run("ip", ["-n", this.ns(host), ...args]);
  }

  /**
   * Starts `deno run -A <entry> ...args` (from the project root) inside
   * `host`; stopped by `close()`.
   */
  spawn(host: Host, name: string, entry: string, args: string[]): Proc {
    const proc = startProc(name, "ip", [
      ...["netns", "exec", this.ns(host), Deno.execPath()],
      ...componentRunArgs(entry, args),
    ]);
    this.#procs.push(proc);
    return proc;
  }

  /**
   * An HTTP request with `curl` from inside `host`. Never throws for a
   * failed connection: the result carries curl's exit code.
   */
  async curl(
    host: Host,
    url: string,
    opts: { method?: string; headers?: string[]; body?: string; timeoutS?: number } = {},
  ): Promise<CurlResult> {
    const args = ["-sS", "--max-time", String(opts.timeoutS ?? 10), "-X", opts.method ?? "GET"];
    for (const h of opts.headers ?? []) args.push("-H", h);
    if (opts.body !== undefined) args.push("--data-binary", "@-");
    args.push("-w", "\n%{http_code}", url);
    const res = await this.exec(host, "curl", args, { stdin: opts.body, allowFail: true });
    const cut = res.stdout.lastIndexOf("\n");
    return {
      code: res.code,
      status: Number(res.stdout.slice(cut + 1)) || 0,
      body: res.stdout.slice(0, Math.max(0, cut)),
      stderr: res.stderr.trim(),
    };
  }

  /**
   * Silent NAT state loss: the router forgets every flow (its conntrack
   * table is flushed). Packets of the old flows are then invalid to it and
   * dropped both ways without a FIN or RST; new connections get new mappings.
   */
  async flushRouterState(router: Router): Promise<void> {
    await this.exec(router, "conntrack", ["-F"]);
  }

  /**
   * A router reboot: every link of the router goes down, its flow table is
   * lost, and after `downMs` its links come back up with the same config.
   */
  async rebootRouter(router: Router, downMs: number): Promise<void> {
    for (const link of ROUTER_LINKS[router]) await this.#ip(router, "link", "set", link, "down");
    await this.flushRouterState(router);
    await new Promise((r) => setTimeout(r, downMs));
    for (const link of ROUTER_LINKS[router].toReversed()) {
      await this.#ip(router, "link", "set", link, "up");
    }
  }

  /** Shapes what leaves the router's WAN side (its uplink) to `rate` (tc syntax, e.g. `50mbit`). */
  async limitUplink(router: Router, rate: string): Promise<void> {
    await this.exec(router, "tc", [
      ...["qdisc", "replace", "dev", "wan", "root", "tbf"],
      ...["rate", rate, "burst", "64kb", "latency", "100ms"],
    ]);
  }

  /** Removes the shaping of {@link limitUplink}. */
  async clearUplink(router: Router): Promise<void> {
    await this.exec(router, "tc", ["qdisc", "del", "dev", "wan", "root"]);
  }

  /** Flows the router tracks now (`conntrack -L`), one line each. */
  async routerFlows(router: Router): Promise<string[]> {
    const { stdout } = await this.exec(router, "conntrack", ["-L"], { allowFail: true });
    return stdout.split("\n").filter((l) => l.trim());
  }

  async #build(): Promise<void> {
    const A = LAB_ADDRESSES;
    for (const host of Object.keys(NS_SUFFIX) as Host[]) {
      await run("ip", ["netns", "add", this.ns(host)]);
      this.#made.push(this.ns(host));
      await this.#ip(host, "link", "set", "lo", "up");
    }
    this.#watchdog = new Deno.Command("setsid", {
      args: ["sh", "-c", WATCHDOG, "sh", String(Deno.pid), `${LAB_PREFIX}${this.tag}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    // The internet: one bridge, the CA's and hub's address, a WAN link to each router.
    await this.#ip("internet", "link", "add", "sw", "type", "bridge");
    await this.#ip("internet", "addr", "add", `${A.internet}/24`, "dev", "sw");
    await this.#ip("internet", "link", "set", "sw", "up");
    for (const router of ["homeRouter", "officeRouter"] as const) {
      const port = NS_SUFFIX[router];
      await this.#veth("internet", port, router, "wan");
      await this.#ip("internet", "link", "set", port, "master", "sw", "up");
      await this.#ip(router, "addr", "add", `${A[router]}/24`, "dev", "wan");
      await this.#ip(router, "link", "set", "wan", "up");
    }
    // Home: one host on the router's LAN link.
    await this.#veth("homeRouter", "lan", "home", "eth0");
    await this.#ip("homeRouter", "addr", "add", "10.1.0.1/24", "dev", "lan");
    await this.#ip("homeRouter", "link", "set", "lan", "up");
    await this.#lanHost("home", A.home, "10.1.0.1");
    // Office: the agent's host and the service's host on a LAN bridge.
    await this.#ip("officeRouter", "link", "add", "lan", "type", "bridge");
    await this.#ip("officeRouter", "addr", "add", "10.2.0.1/24", "dev", "lan");
    await this.#ip("officeRouter", "link", "set", "lan", "up");
    for (const [host, port] of [["office", "p-agent"], ["officeService", "p-svc"]] as const) {
      await this.#veth("officeRouter", port, host, "eth0");
      await this.#ip("officeRouter", "link", "set", port, "master", "lan", "up");
      await this.#lanHost(host, A[host], "10.2.0.1");
    }
    for (const router of ["homeRouter", "officeRouter"] as const) {
      await this.exec(router, "iptables-restore", [], { stdin: ROUTER_RULES });
      await this.exec(router, "sysctl", [
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.netfilter.nf_conntrack_tcp_loose=0",
      ]);
    }
    // Whoever sits next to the routers on the internet can route the private subnets at them.
    await this.#ip("internet", "route", "add", "10.1.0.0/24", "via", A.homeRouter);
    await this.#ip("internet", "route", "add", "10.2.0.0/24", "via", A.officeRouter);
  }

  /** A veth pair made directly inside the two namespaces (names never touch the root namespace). */
  async #veth(a: Host, aName: string, b: Host, bName: string): Promise<void> {
    await this.#ip(
      a,
      "link",
      "add",
      aName,
      "type",
      "veth",
      "peer",
      "name",
      bName,
      "netns",
      this.ns(b),
    );
  }

  async #lanHost(host: Host, address: string, gateway: string): Promise<void> {
    await this.#ip(host, "addr", "add", `${address}/24`, "dev", "eth0");
    await this.#ip(host, "link", "set", "eth0", "up");
    await this.#ip(host, "route", "add", "default", "via", gateway);
  }

  /** Stops every process started in the lab and deletes its namespaces. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled(this.#procs.map((p) => p.stop()));
      // The internet namespace last: the watchdog waits for it.
      for (const name of this.#made.toReversed()) await removeNamespace(name);
      if (this.#watchdog) {
        // With the lab gone it ends by itself within half a second.
        const timer = setTimeout(() => this.#watchdog?.kill("SIGKILL"), 5_000);
        await this.#watchdog.status;
        clearTimeout(timer);
      }
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
