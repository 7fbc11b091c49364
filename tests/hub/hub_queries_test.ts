/**
 * Hub queries cost O(page + log n): the hub's own CPU per `GET /api/services`
 * page and name search stays flat from 1,000 to 100,000 services published by
 * one member (a hub that sorts every service row per call spends ~100× more
 * at 100,000). CPU time of the hub process (`/proc/PID/stat`) is compared
 * between the two sizes in one run, with a wide margin; no wall-clock time is
 * asserted. `bench/hub_queries.ts` prints the figures.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import { startQueryHub, timeQueries } from "../../bench/hub_queries.ts";

const QUERIES = 300;

Deno.test("a services page and a name search cost the hub no more CPU at 100,000 services than at 1,000", async () => {
  await using h = new Harness();
  await using q = await startQueryHub(h);
  const { hub, reader, kinds } = q;
  const cpu: Record<string, number[]> = {};
  for (const size of [1_000, 100_000]) {
    await q.growTo(size);
    const total = JSON.parse((await reader.request("GET", "/api/services?limit=1")).text).total;
    assert.equal(total, size);
    for (const kind of ["services page", "services search"] as const) {
      await timeQueries(reader, hub.child.pid, 30, kinds[kind]); // warm-up
      (cpu[kind] ??= []).push(
        (await timeQueries(reader, hub.child.pid, QUERIES, kinds[kind])).cpuMs,
      );
    }
  }
  console.log(
    Object.entries(cpu).map(([k, [a, b]]) =>
      `${k}: hub CPU ${a.toFixed(2)} ms per query at 1,000 services, ${b.toFixed(2)} at 100,000`
    ).join("\n"),
  );
  for (const [kind, [small, large]] of Object.entries(cpu)) {
    assert.ok(large <= 4 * small + 1, `${kind}: ${large} ms of hub CPU vs ${small} at 1,000`);
  }
  // A search is a name prefix, in name order, with its total.
  const found = JSON.parse(
    (await reader.request("GET", "/api/services?q=svc-0004&limit=5")).text,
  );
  assert.equal(found.total, 10);
  assert.deepEqual(
    found.items.map((s: { name: string }) => s.name),
    ["svc-00040", "svc-00041", "svc-00042", "svc-00043", "svc-00044"],
  );
});
