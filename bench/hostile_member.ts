/**
 * One hostile member against a hub with its default limits
 * (`deno run -A bench/hostile_member.ts`): with one user certificate it opens
 * `--sessions` sessions (beyond the per-user cap), tries `--streams` control
 * streams for different endpoint ids on each before any hello, publishes as
 * many services with as long user lists as the hub takes, then churns (drops
 * half its sessions and comes back with new endpoint ids) and polls the
 * service list. Meanwhile another member joins and reads the list.
 *
 * It prints the hub's RSS before and after the attack, its peak (`VmHWM`), how
 * many sessions, endpoints and services the hub took and refused (429), and
 * the ceiling: the attack fails the run if the hub's peak RSS passes it.
 *
 *   deno run -A bench/hostile_member.ts [--sessions=1200] [--streams=5] [--ceiling-mib=512]
 */
import { parseCommandLine } from "@ztm/shared/flags";
import { Harness, issueUser } from "../tests/fixtures/harness.ts";
import { HubClient, userTls } from "../tests/fixtures/hub_client.ts";

/** `VmRSS` and `VmHWM` of process `pid`, MiB. */
function memory(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 };
}

/**
 * 100 services whose JSON takes just under `bytes`: each open to distinct
 * made-up users (distinct strings cost the hub the most memory).
 */
function bulkyServices(tag: string, bytes: number) {
  const perService = Math.floor(bytes / 100);
  return Array.from({ length: 100 }, (_, s) => {
    const users: string[] = [];
    let size = 40;
    for (let u = 0; size + 24 < perService; u++) {
      const name = `${tag}-${s}-${u}`.padEnd(20, "x").slice(0, 40);
      users.push(name);
      size += name.length + 3;
    }
    return { proto: "tcp", name: `${tag}-svc-${s}`, users };
  });
}

/** Runs `fn` over `items`, `width` at a time. */
async function inBatches<T>(items: T[], width: number, fn: (t: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

const flags = parseCommandLine({
  name: "bench/hostile_member.ts",
  summary:
    "One member with one certificate tries to exhaust a hub; prints its RSS and the ceiling.",
  flags: [
    { name: "sessions", kind: "integer", default: "1200", help: "sessions the member opens" },
    { name: "streams", kind: "integer", default: "5", help: "control streams tried per session" },
    { name: "ceiling-mib", kind: "integer", default: "512", help: "hub peak RSS allowed, MiB" },
    { name: "service-bytes", kind: "integer", default: "32500", help: "services JSON per hello" },
  ],
  examples: ["deno run -A bench/hostile_member.ts --sessions=300"],
}, Deno.args);
const sessions = flags.integer("sessions");
const streams = flags.integer("streams");
const ceiling = flags.integer("ceiling-mib");
const serviceBytes = flags.integer("service-bytes");

await using h = new Harness();
const ca = await h.startCa();
const hub = await h.startHub(ca);
const pid = hub.child.pid;
const mallory = userTls(await issueUser(ca.url, "mallory"));
const alice = userTls(await issueUser(ca.url, "alice"));
const before = memory(pid);
console.log(`hub RSS before the attack: ${before.rss.toFixed(0)} MiB`);

const statuses = new Map<string, number>();
const count = (what: string) => statuses.set(what, (statuses.get(what) ?? 0) + 1);
const held: HubClient[] = [];
const t0 = performance.now();

/** One hostile session: `streams` control streams for different ids, then a hello on each. */
async function attack(i: number, round: string): Promise<void> {
  const client = HubClient.connect(hub.port, mallory);
  held.push(client);
  const results = await Promise.all(
    Array.from(
      { length: streams },
      (_, s) =>
        client.openControl(`${round}-${i}-${s}`, `${round}-${i}-${s}`, {
          services: bulkyServices(`${round}${i}s${s}`, serviceBytes),
        }).catch((err) => ({ status: undefined, text: String(err), refused: "error" })),
    ),
  );
  for (const r of results) {
    count(r.status === undefined ? "no answer" : `${r.status} ${errorCodeOf(r.text)}`);
  }
}

function errorCodeOf(text: string): string {
  try {
    return JSON.parse(text).error?.code ?? "";
  } catch {
    return "";
  }
}

await inBatches([...Array(sessions).keys()], 32, (i) => attack(i, "a"));
const afterJoin = memory(pid);
console.log(
  `after ${sessions} sessions × ${streams} control streams: hub RSS ${
    afterJoin.rss.toFixed(0)
  } MiB (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
);

// Churn: half the sessions go, and come back as new endpoints.
await Promise.all(held.splice(0, Math.floor(held.length / 2)).map((c) => c.close()));
await inBatches([...Array(Math.floor(sessions / 2)).keys()], 32, (i) => attack(i, "b"));

// Polling the service list from a few of its sessions while another member joins.
await using member = HubClient.connect(hub.port, alice);
const polls = Array.from({ length: 4 }, async (_, k) => {
  const c = held[k];
  for (let i = 0; i < 200 && c; i++) await c.request("GET", "/api/services?limit=100");
});
const memberJoin = await member.openControl("alice-1", "alice-laptop");
const memberList = await member.request("GET", "/api/services?limit=10");
await Promise.all(polls);
const after = memory(pid);
const status = JSON.parse((await member.request("GET", "/api/status")).text);

console.log(`\n## one hostile member against a hub with default limits\n`);
console.log(
  `answers to the member's control streams: ${JSON.stringify(Object.fromEntries(statuses))}`,
);
console.log(
  `hub holds ${status.sessions} sessions, ${status.endpoints} endpoints (${status.online} online)`,
);
console.log(
  `another member joined: ${memberJoin.status}; read the service list: ${memberList.status}`,
);
console.log(
  `hub RSS before ${before.rss.toFixed(0)} MiB, after ${after.rss.toFixed(0)} MiB, peak ${
    after.peak.toFixed(0)
  } MiB; ceiling ${ceiling} MiB: ${after.peak <= ceiling ? "held" : "PASSED"}`,
);
console.log(JSON.stringify({
  sessions,
  streams,
  serviceBytes,
  before: before.rss,
  after: after.rss,
  peak: after.peak,
  ceiling,
  answers: Object.fromEntries(statuses),
  hub: { sessions: status.sessions, endpoints: status.endpoints },
}));
await Promise.all(held.map((c) => c.close()));
if (after.peak > ceiling || memberJoin.status !== 200 || hub.exited) Deno.exitCode = 1;
