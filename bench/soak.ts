/**
 * The soak run (`deno task soak`, minutes; not part of CI): many concurrent
 * tunneled connections through one hub for a while, opened and closed all
 * the time, each carrying a few rounds of random data that is checked on the
 * way back (a running checksum of what was sent against what came back).
 *
 *   soak (this process) → 127.0.0.1:mapped (agent A) → hub → agent B → echo_server.ts
 *
 * Every few seconds it prints the connections open, completed and failed,
 * and the RSS and open descriptors of every process; at the end the memory
 * growth of each process from the end of the warm-up to the end, and every
 * error kind with a count. Exit status 1 when any connection failed.
 *
 *   deno task soak [--duration=300] [--connections=1000] [--warmup=30]
 */
import { parseCommandLine } from "@ztm/shared/flags";
import { Harness } from "../tests/fixtures/harness.ts";
import { writeAll } from "./echo_server.ts";
import { startMesh } from "./mesh.ts";
import { LOOPBACK } from "./ports.ts";
import { readProc } from "./proc_stats.ts";

const ECHO = 0x45; // "E": the echo server's mode byte
/** One round (write, read the echo back) that takes longer than this fails the connection. */
const ROUND_TIMEOUT_MS = 30_000;

const flags = parseCommandLine({
  name: "bench/soak.ts",
  summary: "Soak: many concurrent tunneled connections with checksummed data, RSS sampled.",
  flags: [
    { name: "duration", kind: "integer", default: "300", help: "seconds of load" },
    { name: "connections", kind: "integer", default: "1000", help: "connections open at once" },
    { name: "warmup", kind: "integer", default: "30", help: "seconds before the memory baseline" },
    { name: "every", kind: "integer", default: "15", help: "seconds between progress lines" },
  ],
}, Deno.args);
const durationMs = flags.integer("duration") * 1000;
const width = flags.integer("connections");
const warmupMs = Math.min(flags.integer("warmup") * 1000, durationMs / 2);
const everyMs = flags.integer("every") * 1000;

/** FNV-1a over a byte stream, carried across chunks. */
function fnv(hash: number, bytes: Uint8Array): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 16_777_619) >>> 0;
  return h;
}

const stats = { open: 0, completed: 0, rounds: 0, bytes: 0 };
const errors = new Map<string, number>();
const firstErrors: string[] = [];
function failed(kind: string, detail: string): void {
  errors.set(kind, (errors.get(kind) ?? 0) + 1);
  if (firstErrors.length < 10) firstErrors.push(`${kind}: ${detail}`);
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out`)), ROUND_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** One connection: 1–4 rounds of 1–16 KiB, a pause of up to 2 s between rounds, checksummed. */
async function oneConnection(port: number): Promise<void> {
  let conn: Deno.TcpConn;
  try {
    conn = await withTimeout(Deno.connect({ hostname: LOOPBACK, port }), "connect");
  } catch (err) {
    failed("connect", String(err));
    return;
  }
  stats.open++;
  let sent = 2_166_136_261;
  let back = 2_166_136_261;
  const buf = new Uint8Array(64 * 1024);
  try {
    const rounds = 1 + Math.floor(Math.random() * 4);
    for (let r = 0; r < rounds; r++) {
      const size = 1024 + Math.floor(Math.random() * 15 * 1024);
      const data = new Uint8Array(size);
      crypto.getRandomValues(data);
      if (r === 0) data[0] = ECHO;
      sent = fnv(sent, data);
      await withTimeout(writeAll(conn, data), "write");
      let got = 0;
      while (got < size) {
        const n = await withTimeout(
          conn.read(buf.subarray(0, Math.min(buf.length, size - got))),
          "read",
        );
        if (n === null) throw new Error(`ended after ${got} of ${size} bytes`);
        back = fnv(back, buf.subarray(0, n));
        got += n;
      }
      if (back !== sent) {
        failed("checksum", `round ${r} of a connection: ${back} != ${sent}`);
        return;
      }
      stats.rounds++;
      stats.bytes += size;
      await new Promise((res) => setTimeout(res, Math.random() * 2_000));
    }
    stats.completed++;
  } catch (err) {
    failed("transfer", String(err));
  } finally {
    stats.open--;
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

await using h = new Harness();
const echo = await h.spawnService("echo", "bench/echo_server.ts", ["--listen=127.0.0.1:0"]);
const mesh = await startMesh(h, { echo: echo.port });
const port = mesh.ports.get(echo.port)!;
const procs: Record<string, number> = {
  hub: mesh.hub.child.pid,
  "agent A": mesh.agentA.child.pid,
  "agent B": mesh.agentB.child.pid,
  echo: echo.child.pid,
  soak: Deno.pid,
};

function fds(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return 0;
  }
}
const rssMiB = (pid: number) => (readProc(pid)?.rssKiB ?? 0) / 1024;
const snapshot = () =>
  Object.fromEntries(
    Object.entries(procs).map(([k, pid]) => [k, { rss: rssMiB(pid), fds: fds(pid) }]),
  );
const fmt = (s: ReturnType<typeof snapshot>) =>
  Object.entries(s).map(([k, v]) => `${k} ${v.rss.toFixed(0)} MiB/${v.fds} fd`).join(", ");

console.log(
  `soak: ${width} concurrent connections for ${durationMs / 1000} s through port ${port}`,
);
const started = Date.now();
const peak: Record<string, number> = {};
let baseline: ReturnType<typeof snapshot> | undefined;
const progress = setInterval(() => {
  const s = snapshot();
  for (const [k, v] of Object.entries(s)) peak[k] = Math.max(peak[k] ?? 0, v.rss);
  if (!baseline && Date.now() - started >= warmupMs) baseline = s;
  const failures = [...errors.values()].reduce((a, b) => a + b, 0);
  console.log(
    `${
      Math.round((Date.now() - started) / 1000)
    } s: open ${stats.open}, completed ${stats.completed}, ` +
      `failed ${failures}, ${(stats.bytes / 2 ** 20).toFixed(0)} MiB echoed | ${fmt(s)}`,
  );
}, everyMs);

const worker = async () => {
  while (Date.now() - started < durationMs) await oneConnection(port);
};
await Promise.all(Array.from({ length: width }, worker));
clearInterval(progress);

const end = snapshot();
baseline ??= end;
const seconds = (Date.now() - started) / 1000;
console.log(`\nsoak done in ${seconds.toFixed(0)} s`);
console.log(
  `connections completed ${stats.completed} (${(stats.completed / seconds).toFixed(0)}/s), ` +
    `rounds ${stats.rounds}, ${(stats.bytes / 2 ** 20).toFixed(0)} MiB echoed and checked`,
);
console.log(
  "| process | RSS after warm-up, MiB | RSS at end, MiB | growth, MiB | peak RSS, MiB | fds at end |",
);
console.log("|---|---|---|---|---|---|");
for (const k of Object.keys(procs)) {
  const a = baseline[k].rss;
  const b = end[k].rss;
  console.log(
    `| ${k} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b - a).toFixed(0)} | ${
      Math.max(peak[k] ?? 0, b).toFixed(0)
    } | ${end[k].fds} |`,
  );
}
const failures = [...errors.values()].reduce((a, b) => a + b, 0);
console.log(
  failures === 0
    ? "errors: none"
    : `errors: ${[...errors].map(([k, n]) => `${k} ${n}`).join(", ")}\n  ${
      firstErrors.join("\n  ")
    }`,
);
for (const p of [mesh.hub, mesh.agentA, mesh.agentB]) {
  if (p.exited) console.log(`${p.name} EXITED:\n${p.tail()}`);
  // Warnings and errors each component logged, counted by event and error text.
  const seen = new Map<string, number>();
  for (const l of p.logs) {
    if (l.level !== "warn" && l.level !== "error") continue;
    const key = `${l.msg}${l.err ? `: ${String(l.err).slice(0, 160)}` : ""}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  for (const [key, n] of seen) console.log(`${p.name} logged ${n} × ${key}`);
}
if (failures > 0) Deno.exitCode = 1;
