/**
 * Revocation at scale (`deno task bench:revoke`): the CA's database first
 * gets `--entries` revoked certificates still valid (100,000 by default, as
 * `tests/fixtures/crl_fill.ts` writes them), so every CRL below lists that many. Then
 * each run: a user's tunneled connection moves data; the user's certificate
 * is revoked at the CA (`DELETE /api/certificates/{name}`); the figures are
 *
 * - sign: the CA signing the CRL (its `crl signed` log line),
 * - verify at hub: the hub verifying it (`crl applied`),
 * - verify at agent: agent B verifying it after the hub's notice (`crl verified`),
 * - revocation to close: from sending the DELETE until that connection closes.
 *
 * The hub follows the CA's revocation feed by long poll (`hub/revocations.ts`);
 * the target for each is ≤ 1 s.
 *
 *   client (this process) → 127.0.0.1:mapped (agent of user rev-N) → hub → agent B → echo_server.ts
 *
 * Each run uses a new user and a new agent process. Prints every run and
 * min / median / max.
 *
 *   deno task bench:revoke [--runs=3] [--entries=100000]
 */
import { join } from "node:path";
import { parseCommandLine } from "@ztm/shared/flags";
import { fillRevocations } from "../tests/fixtures/crl_fill.ts";
import {
  api,
  Harness,
  issueUser,
  joinMesh,
  type LogLine,
  type Proc,
} from "../tests/fixtures/harness.ts";
import { writeAll } from "./echo_server.ts";
import { freePort, LOOPBACK } from "./ports.ts";

const MESH = "bench";
const ECHO = 0x45; // "E": the echo server's mode byte

const flags = parseCommandLine({
  name: "bench/revoke.ts",
  summary: "Time from a certificate's revocation at the CA to the close of its live tunnel.",
  flags: [
    { name: "runs", kind: "integer", default: "3", help: "revocations to time" },
    {
      name: "entries",
      kind: "integer",
      default: "100000",
      help: "revoked, still valid certificates on the CRL before the runs",
    },
  ],
}, Deno.args);
const runs = flags.integer("runs");
const entries = flags.integer("entries");

/** The `ms` of the first log line of `proc` from `from` on that `pred` matches. */
async function loggedMs(proc: Proc, from: number, pred: (l: LogLine) => boolean): Promise<number> {
  const line = await proc.waitForLog(pred, 120_000, from);
  return Number(line.ms);
}

/** Polls `check` every 50 ms; throws naming `what` after 20 s. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Not reached within 20 s: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const connected = (url: string) => async () =>
  (await api(url, "GET", `/api/meshes/${MESH}`)).body?.status?.connected === true;

await using h = new Harness();
const echo = await h.spawnService("echo", "bench/echo_server.ts", ["--listen=127.0.0.1:0"]);
const caDir = await h.tempDir("ztm-ca-");
fillRevocations(join(caDir, "ca.db"), entries);
const ca = await h.startCa({ dir: caDir });
const hub = await h.startHub(ca);
const first = await hub.waitForLog((l) => l.msg === "crl applied", 120_000);
console.log(`CRL of ${first.count} entries verified by the hub at its start in ${first.ms} ms`);
const provider = await h.startAgent({ name: "agent-b" });
await joinMesh(provider.url, MESH, await issueUser(ca.url, "bob"), hub.address, "b");
await until("agent B connected", connected(provider.url));
const added = await api(provider.url, "POST", `/api/meshes/${MESH}/endpoints/b/services/tcp/echo`, {
  host: LOOPBACK,
  port: echo.port,
  users: ["*"],
});
if (added.status !== 201) throw new Error(`service: ${added.status} ${JSON.stringify(added.body)}`);

const figures: number[] = [];
const signMs: number[] = [];
const hubMs: number[] = [];
const agentMs: number[] = [];
for (let run = 1; run <= runs; run++) {
  const user = `rev-${run}`;
  const agent = await h.startAgent({ name: `agent-${user}` });
  await joinMesh(agent.url, MESH, await issueUser(ca.url, user), hub.address, user);
  await until(`${user} connected`, connected(agent.url));
  const port = freePort();
  const mapped = await api(
    agent.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${user}/ports/${LOOPBACK}/tcp/${port}`,
    {
      target: { service: "echo" },
    },
  );
  if (mapped.status !== 201) {
    throw new Error(`mapping: ${mapped.status} ${JSON.stringify(mapped.body)}`);
  }

  // One connection that keeps writing 16 KiB and reading it back.
  const conn = await Deno.connect({ hostname: LOOPBACK, port });
  const chunk = new Uint8Array(16 * 1024).fill(1);
  chunk[0] = ECHO;
  let echoed = 0;
  let closedAt = 0;
  const pump = (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        await writeAll(conn, chunk);
        chunk[0] = 1;
        let got = 0;
        while (got < chunk.length) {
          const n = await conn.read(buf);
          if (n === null) return;
          got += n;
          echoed += n;
        }
      }
    } catch {
      /* a reset is a close too */
    } finally {
      closedAt = performance.now();
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  })();
  await until(`${user}'s data flowing`, () => Promise.resolve(echoed > 1024 * 1024));

  const marks = [ca.logs.length, hub.logs.length, provider.logs.length];
  const sent = performance.now();
  const del = await fetch(`${ca.url}/api/certificates/${user}`, { method: "DELETE" });
  await del.body?.cancel();
  if (del.status !== 200) throw new Error(`revoke ${user}: ${del.status}`);
  const timeout = setTimeout(() => conn.close(), 20_000);
  await pump;
  clearTimeout(timeout);
  const ms = closedAt - sent;
  figures.push(ms);
  const count = entries + run;
  signMs.push(await loggedMs(ca, marks[0], (l) => l.msg === "crl signed" && l.count === count));
  hubMs.push(await loggedMs(hub, marks[1], (l) => l.msg === "crl applied" && l.count === count));
  agentMs.push(
    await loggedMs(provider, marks[2], (l) => l.msg === "crl verified" && l.count === count),
  );
  console.log(
    `run ${run}: CRL of ${count} entries signed in ${signMs.at(-1)} ms, verified at the hub in ${
      hubMs.at(-1)
    } ms and at agent B in ${agentMs.at(-1)} ms; ${user}'s tunnel closed ${
      ms.toFixed(0)
    } ms after the DELETE was sent`,
  );
  await agent.stop();
}
/** `min / median / max` of `values`, ms. */
function spread(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const f = (v: number) => v.toFixed(0);
  return `min ${f(sorted[0])} / median ${f(sorted[Math.floor(sorted.length / 2)])} / max ${
    f(sorted[sorted.length - 1])
  }`;
}
console.log(
  `CRL of ${entries.toLocaleString("en")}+ entries, ms (${runs} runs; target ≤ 1000 each):`,
);
console.log(`  sign at the CA        ${spread(signMs)}`);
console.log(`  verify at the hub     ${spread(hubMs)}`);
console.log(`  verify at an agent    ${spread(agentMs)}`);
console.log(`  revocation to close   ${spread(figures)}`);
