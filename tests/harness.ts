/**
 * Test harness: starts real ztm component processes on port 0, learns each
 * bound address from its JSON log, and removes every process and temp dir at
 * the end of the test — also when the test fails.
 *
 * @example
 * ```ts
 * await using h = new Harness();
 * const ca = await h.startCa();
 * const res = await fetch(`${ca.url}/api/certificates/ca`);
 * ```
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { keyLeaks, rememberPrivateKey, rememberSecretsIn } from "./secret_scan.ts";

/** The project root. */
export const ROOT: string = dirname(dirname(fileURLToPath(import.meta.url)));

/** One parsed log line. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

/** A running component process and everything it has logged. */
export class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  /** Every JSON log line so far (stderr), in order. */
  readonly logs: LogLine[] = [];
  /** Every raw line of stdout and stderr, for failure reports and log scans. */
  readonly raw: string[] = [];
  #waiters = new Set<() => void>();
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #readers: Promise<void>[];

  constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.child = child;
    this.#status = child.status.then((s) => {
      this.#exited = true;
      this.#notify();
      return s;
    });
    this.#readers = [this.#read(child.stdout, false), this.#read(child.stderr, true)];
  }

  async #read(stream: ReadableStream<Uint8Array>, isLog: boolean): Promise<void> {
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.raw.push(line);
        if (isLog && line.startsWith("{")) {
          try {
            this.logs.push(JSON.parse(line));
          } catch { /* not a log line */ }
        }
        this.#notify();
      }
    }
    if (buf) this.raw.push(buf);
  }

  #notify(): void {
    for (const w of this.#waiters) w();
  }

  /** True once the process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The exit status (waits for the exit). */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /**
   * Waits for a log line matching `pred` (already logged ones count) and
   * returns it; throws with the process's output if it exits or the deadline passes.
   */
  async waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const hit = this.logs.slice(from).find(pred);
      if (hit) return hit;
      if (this.#exited) {
        throw new Error(`${this.name} exited before the awaited log line:\n${this.tail()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.name}: awaited log line not seen in ${timeoutMs} ms:\n${this.tail()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /** The last lines of output, for error messages. */
  tail(n = 30): string {
    return this.raw.slice(-n).join("\n");
  }

  /** Sends a signal if still running. */
  signal(sig: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.child.kill(sig);
    } catch { /* already gone */ }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; waits for exit and for output to drain. */
  async stop(graceMs = 5_000): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    const status = await this.#status;
    clearTimeout(timer);
    await Promise.allSettled(this.#readers);
    return status;
  }

  /** SIGKILL and wait. */
  async kill(): Promise<Deno.CommandStatus> {
    this.signal("SIGKILL");
    const status = await this.#status;
    await Promise.allSettled(this.#readers);
    return status;
  }
}

/**
 * The arguments of `deno` that run `entry` (relative to the project root) with
 * `args` as a component runs: all permissions and the same V8 tuning as the
 * deno.json tasks (see the README's Performance section).
 */
export function componentRunArgs(entry: string, args: string[]): string[] {
  return ["run", "--allow-all", "--v8-flags=--max-semi-space-size=2", join(ROOT, entry), ...args];
}

/** Starts `cmd args` from the project root with its output read into a {@link Proc}. */
export function startProc(
  name: string,
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Proc {
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Proc(name, child);
}

/** A component process with an HTTP API. */
export interface Service extends Proc {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
}

/**
 * Owns processes and temp dirs of one test; dispose it (`await using`) to
 * clean up. Disposing also scans every line each process wrote for private
 * key material (see `secret_scan.ts`) and throws if it finds any, so every
 * test that uses a harness is also a log-leak test.
 */
export class Harness implements AsyncDisposable {
  #procs: Proc[] = [];
  #dirs: string[] = [];

  /** A fresh temp dir removed at the end. */
  async tempDir(prefix = "ztm-test-"): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix });
    this.#dirs.push(dir);
    return dir;
  }

  /** Starts `deno run -A <entry> ...args` from the project root. */
  spawn(name: string, entry: string, args: string[], env: Record<string, string> = {}): Proc {
    const proc = startProc(name, Deno.execPath(), componentRunArgs(entry, args), env);
    this.#procs.push(proc);
    return proc;
  }

  /** Starts another program (a real peer such as `prometheus`), stopped at the end like the rest. */
  spawnProgram(name: string, cmd: string, args: string[]): Proc {
    const proc = startProc(name, cmd, args);
    this.#procs.push(proc);
    return proc;
  }

  /** Spawns a component and waits for its `listening` log line. */
  async spawnService(
    name: string,
    entry: string,
    args: string[],
    env?: Record<string, string>,
  ): Promise<Service> {
    const proc = this.spawn(name, entry, args, env);
    const line = await proc.waitForLog((l) => l.msg === "listening");
    const port = Number(String(line.addr).split(":").pop());
    return Object.assign(proc, { url: `http://127.0.0.1:${port}`, port });
  }

  /** Starts a CA on port 0 with its database in `dir` (a new temp dir by default). */
  async startCa(
    opts: { dir?: string; args?: string[] } = {},
  ): Promise<Service & { dir: string; database: string }> {
    const dir = opts.dir ?? await this.tempDir("ztm-ca-");
    const database = join(dir, "ca.db");
    const ca = await this.spawnService("ca", "ca/main.ts", [
      "--listen=127.0.0.1:0",
      `--database=${database}`,
      ...(opts.args ?? []),
    ]);
    return Object.assign(ca, { dir, database });
  }

  /** Starts a hub on port 0 enrolled with `ca`; its data dir is `dir` (a new temp dir by default). */
  async startHub(
    ca: { url: string; database: string },
    opts: { dir?: string; args?: string[]; caUrl?: string } = {},
  ): Promise<Service & { dir: string; address: string }> {
    const dir = opts.dir ?? await this.tempDir("ztm-hub-");
    const caAddr = (opts.caUrl ?? ca.url).replace(/^http:\/\//, "");
    const hub = await this.spawnService("hub", "hub/main.ts", [
      `--ca=${caAddr}`,
      "--listen=127.0.0.1:0",
      "--data-listen=127.0.0.1:0",
      "--names=localhost",
      `--data-dir=${dir}`,
      `--ca-token-file=${ca.database}.token`,
      ...(opts.args ?? []),
    ]);
    return Object.assign(hub, { dir, address: `localhost:${hub.port}` });
  }

  /**
   * Starts an agent on port 0 with its database in `dir` (a new temp dir by
   * default) and remembers its API token for `api()`.
   */
  async startAgent(
    opts: { dir?: string; args?: string[]; name?: string } = {},
  ): Promise<Service & { dir: string; database: string; token: string }> {
    const dir = opts.dir ?? await this.tempDir("ztm-agent-");
    const database = join(dir, "agent.db");
    const agent = await this.spawnService(opts.name ?? "agent", "agent/main.ts", [
      "--listen=127.0.0.1:0",
      `--database=${database}`,
      ...(opts.args ?? []),
    ]);
    const token = Deno.readTextFileSync(`${database}.token`).trim();
    rememberAgentToken(agent.url, token);
    return Object.assign(agent, { dir, database, token });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.allSettled(this.#procs.map((p) => p.stop()));
    // Keys the processes made themselves (the CA's, hubs', `start`'s) are read from
    // their state before it goes, so the scan knows them too.
    let leaks: string[] = [];
    try {
      for (const dir of this.#dirs) await rememberSecretsIn(dir);
      leaks = keyLeaks(this.#procs.map((p) => ({ name: p.name, lines: p.raw })));
    } finally {
      for (const dir of this.#dirs) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
    if (leaks.length) {
      throw new Error(`private key material in process output:\n${leaks.join("\n")}`);
    }
  }
}

/** Runs a command to completion and returns its output; throws with stderr on a non-zero exit unless `allowFail`. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; stdin?: string; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const result = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (result.code !== 0 && !opts.allowFail) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${result.code}:\n${result.stderr}${result.stdout}`,
    );
  }
  return result;
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms${last ? `: ${last}` : ""}`);
}

/** A user's credentials from the CA: certificate, key and the CA certificate, PEM. */
export interface UserFiles {
  user: string;
  ca: string;
  certificate: string;
  privateKey: string;
}

/** Issues a certificate for `user` through the CA's API, as the walkthrough's curl does. */
export async function issueUser(caUrl: string, user: string): Promise<UserFiles> {
  const keyRes = await fetch(`${caUrl}/api/certificates/${user}`, { method: "POST" });
  const privateKey = await keyRes.text();
  if (keyRes.status !== 201) throw new Error(`issuing ${user}: ${keyRes.status} ${privateKey}`);
  const certificate = await (await fetch(`${caUrl}/api/certificates/${user}`)).text();
  const ca = await (await fetch(`${caUrl}/api/certificates/ca`)).text();
  rememberPrivateKey(privateKey);
  return { user, ca, certificate, privateKey };
}

/** A parsed API answer; tests read its fields freely. */
// deno-lint-ignore no-explicit-any
export type ApiBody = any;

const agentTokens = new Map<string, string>();

/** Remembers the API token of the agent at `url`, so `api()` sends it. */
export function rememberAgentToken(url: string, token: string): void {
  agentTokens.set(url, token);
}

/**
 * Calls an agent's API with its API token (see `rememberAgentToken`; agents
 * started by `Harness.startAgent` are remembered); returns status and parsed
 * JSON (or text).
 */
export async function api(
  agentUrl: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: ApiBody }> {
  const token = agentTokens.get(agentUrl);
  const res = await fetch(`${agentUrl}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* keep text */ }
  return { status: res.status, body: parsed };
}

/** Joins `agentUrl` to `mesh` through `hubAddress` with `files`; returns the joined mesh summary. */
export async function joinMesh(
  agentUrl: string,
  mesh: string,
  files: UserFiles,
  hubAddress: string,
  endpointName: string,
): Promise<ApiBody> {
  const res = await api(agentUrl, "POST", `/api/meshes/${mesh}`, {
    ca: files.ca,
    agent: { name: endpointName, certificate: files.certificate, privateKey: files.privateKey },
    bootstraps: [hubAddress],
  });
  if (res.status !== 201) {
    throw new Error(`join ${endpointName}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return res.body;
}
