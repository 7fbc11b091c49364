/**
 * Revocation-to-close latency (`deno task bench:revoke`): a user's tunneled
 * connection moves data; the user's certificate is revoked at the CA
 * (`DELETE /api/certificates/{name}`); the figure is the time from sending
 * the DELETE until that connection is closed. The hub follows the CA's
 * revocation feed by long poll (`hub/revocations.ts`); the target is ≤ 1 s.
 *
 *   client (this process) → 127.0.0.1:mapped (agent of user rev-N) → hub → agent B → echo_server.ts
 *
 * Each run uses a new user and a new agent process. Prints every run and
 * min / median / max.
 *
 *   deno task bench:revoke [--runs=7]
 */
import { parseCommandLine } from "@ztm/shared/flags";
import { api, Harness, issueUser, joinMesh } from "../tests/harness.ts";
import { writeAll } from "./echo_server.ts";
import { freePort, LOOPBACK } from "./ports.ts";

const MESH = "bench";
const ECHO = 0x45; // "E": the echo server's mode byte

const flags = parseCommandLine({
  name: "bench/revoke.ts",
  summary: "Time from a certificate's revocation at the CA to the close of its live tunnel.",
  flags: [{ name: "runs", kind: "integer", default: "7", help: "revocations to time" }],
}, Deno.args);
const runs = flags.integer("runs");

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
const ca = await h.startCa();
const hub = await h.startHub(ca);
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

  const sent = performance.now();
  const del = await fetch(`${ca.url}/api/certificates/${user}`, { method: "DELETE" });
  await del.body?.cancel();
  if (del.status !== 200) throw new Error(`revoke ${user}: ${del.status}`);
  const timeout = setTimeout(() => conn.close(), 20_000);
  await pump;
  clearTimeout(timeout);
  const ms = closedAt - sent;
  figures.push(ms);
  console.log(`run ${run}: ${user}'s tunnel closed ${ms.toFixed(0)} ms after the DELETE was sent`);
  await agent.stop();
}
const sorted = [...figures].sort((a, b) => a - b);
console.log(
  `revocation to close, ms (${runs} runs): min ${sorted[0].toFixed(0)} / median ${
    sorted[Math.floor(sorted.length / 2)].toFixed(0)
  } / max ${sorted[sorted.length - 1].toFixed(0)} (target ≤ 1000)`,
);
