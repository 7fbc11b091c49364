/**
 * What a hub query costs as the mesh grows (`deno run -A bench/hub_queries.ts`):
 * one member publishes 1,000 services, then 100,000 (100 endpoints of 1,000,
 * names in no order),
 * and the same queries are timed at both sizes in the same run: a page of
 * `GET /api/services` at a random offset, a name search (`q`), and a page of
 * `GET /api/endpoints`. It prints the per-query time (wall, as a client sees
 * it, and the hub's own CPU from `/proc`) at each size and their ratio. With
 * O(page + log n) queries the ratio stays near 1; a hub that sorts every
 * service row per call (before this bench) grows it ~100×.
 *
 *   deno run -A bench/hub_queries.ts [--queries=500]
 */
import { parseCommandLine } from "@ztm/shared/flags";
import { Harness, issueUser } from "../tests/fixtures/harness.ts";
import { HubClient, userTls } from "../tests/fixtures/hub_client.ts";

/** Services per simulated endpoint (the protocol's most per endpoint). */
export const SERVICES_PER_ENDPOINT = 1_000;

/**
 * The services endpoint `e` publishes, open to everyone: service `k` =
 * e × 1,000 + s is named `svc-NNNNN` with N = k × 7,919 mod 100,000 (a
 * permutation), so names arrive in no particular order, as real ones do.
 */
function servicesOf(e: number, count: number) {
  return Array.from({ length: count }, (_, s) => ({
    proto: "tcp",
    name: `svc-${String(((e * SERVICES_PER_ENDPOINT + s) * 7_919) % 100_000).padStart(5, "0")}`,
    users: ["*"],
  }));
}

/**
 * Registers endpoints `from`… on `port` (one session each, as `tls`) until
 * `total` services are published; returns the sessions (close them at the end).
 */
export async function publishServices(
  port: number,
  tls: ReturnType<typeof userTls>,
  from: number,
  total: number,
): Promise<HubClient[]> {
  const clients: HubClient[] = [];
  for (let e = from, left = total; left > 0; e++, left -= SERVICES_PER_ENDPOINT) {
    const client = HubClient.connect(port, tls);
    clients.push(client);
    const opened = await client.openControl(`q-${e}`, `q-${e}`, {
      services: servicesOf(e, Math.min(SERVICES_PER_ENDPOINT, left)),
    });
    if (opened.status !== 200) throw new Error(`endpoint ${e}: ${opened.status} ${opened.text}`);
    opened.stream.on("data", () => {});
  }
  return clients;
}

/** The hub's CPU time so far, ms (user + system, from `/proc/PID/stat`). */
export function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
}

/** Per-query figures of one query kind at one size. */
export interface QueryCost {
  wallMs: number;
  cpuMs: number;
}

/** Times `n` sequential queries from `paths()` on `client`; the hub is process `pid`. */
export async function timeQueries(
  client: HubClient,
  pid: number,
  n: number,
  paths: () => string,
): Promise<QueryCost> {
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await client.request("GET", paths());
    if (r.status !== 200) throw new Error(`query: ${r.status} ${r.text.slice(0, 200)}`);
  }
  return { wallMs: (performance.now() - t0) / n, cpuMs: (cpuMs(pid) - cpu0) / n };
}

/** The queries timed: a random page of services, a name search, a random page of endpoints. */
export function queryKinds(services: () => number, endpoints: () => number) {
  const rnd = (n: number) => Math.floor(Math.random() * Math.max(1, n));
  return {
    "services page": () => `/api/services?offset=${rnd(services() - 50)}&limit=50`,
    "services search": () => `/api/services?q=svc-${String(rnd(10_000)).padStart(4, "0")}&limit=50`,
    "endpoint page (1 row)": () => `/api/endpoints?offset=${rnd(endpoints())}&limit=1`,
  };
}

/**
 * A CA and a hub that takes 1,000 services per endpoint, with a reader's session for the
 * queries; `growTo(size)` has the publisher's endpoints publish until `size` services are on
 * the hub. Disposing closes every session (the harness stops the processes).
 */
export async function startQueryHub(h: Harness) {
  const ca = await h.startCa();
  const hub = await h.startHub(ca, {
    args: [`--max-services=${SERVICES_PER_ENDPOINT}`, "--max-service-bytes=65536"],
  });
  const tls = userTls(await issueUser(ca.url, "publisher"));
  const reader = HubClient.connect(hub.port, userTls(await issueUser(ca.url, "reader")));
  const clients: HubClient[] = [];
  let published = 0;
  return {
    hub,
    reader,
    kinds: queryKinds(() => published, () => clients.length),
    async growTo(size: number): Promise<void> {
      clients.push(...await publishServices(hub.port, tls, clients.length, size - published));
      published = size;
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await Promise.all(clients.map((c) => c.close()));
      await reader.close();
    },
  };
}

if (import.meta.main) {
  const flags = parseCommandLine({
    name: "bench/hub_queries.ts",
    summary: "Per-query cost of hub queries at 1,000 and at N services, same run.",
    flags: [
      { name: "queries", kind: "integer", default: "500", help: "queries timed per kind and size" },
    ],
    examples: ["deno run -A bench/hub_queries.ts --queries=500"],
  }, Deno.args);
  const n = flags.integer("queries");
  const large = 100_000; // the service names are a permutation of 0…99,999
  await using h = new Harness();
  await using q = await startQueryHub(h);
  const { hub, reader } = q;
  const results: Record<string, Record<number, QueryCost>> = {};
  for (const size of [1_000, large]) {
    await q.growTo(size);
    for (const [kind, paths] of Object.entries(q.kinds)) {
      await timeQueries(reader, hub.child.pid, Math.min(50, n), paths); // warm-up
      (results[kind] ??= {})[size] = await timeQueries(reader, hub.child.pid, n, paths);
    }
  }
  console.log(`\n## hub query cost, ${n} queries per kind, 1,000 vs ${large} services\n`);
  console.log("| query | wall ms at 1,000 | at N | ratio | hub CPU ms at 1,000 | at N |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const [kind, by] of Object.entries(results)) {
    const [a, b] = [by[1_000], by[large]];
    console.log(
      `| ${kind} | ${a.wallMs.toFixed(3)} | ${b.wallMs.toFixed(3)} | ${
        (b.wallMs / a.wallMs).toFixed(2)
      } | ${a.cpuMs.toFixed(3)} | ${b.cpuMs.toFixed(3)} |`,
    );
  }
  console.log(JSON.stringify({ queries: n, large, results }));
}
