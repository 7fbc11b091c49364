/**
 * The CI-sized fuzz pass: 37 routes of the CA, agent and hub APIs, 300
 * requests each (11,100 in all), mostly mutations of valid requests.
 * The seed is printed; `ZTM_FUZZ_SEED=<seed>` repeats the same requests, and
 * `deno task fuzz` runs a longer pass.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import { fuzzSeed } from "./fuzz.ts";
import { fuzzMesh } from "./fuzz_mesh.ts";

const PER_ROUTE = 300;

Deno.test("fuzzing the CA, agent and hub APIs gets no 5xx, no crash and no unasked change", async () => {
  await using h = new Harness();
  const seed = fuzzSeed();
  console.log(`fuzz seed ${seed} (repeat with ZTM_FUZZ_SEED=${seed})`);
  const report = await fuzzMesh(h, { seed, perRoute: PER_ROUTE, concurrency: 6 });
  console.log(report.histogram.format());
  console.log(
    `${report.histogram.total()} requests on ${report.routes.length} routes in ${report.ms} ms, ` +
      `${report.writes} changes answered 2xx`,
  );
  const why = `seed ${seed}${report.logs.length ? `\n${report.logs.join("\n")}` : ""}`;
  assert.deepEqual(report.crashed, [], `${why}: processes exited`);
  assert.deepEqual(
    report.failures,
    [],
    `${why}: 5xx or unanswered requests, such as\n${report.examples.join("\n")}`,
  );
  assert.deepEqual(report.unexplained, [], `${why}: state changed unasked`);
  assert.ok(report.histogram.total() >= 10_000, `${why}: only ${report.histogram.total()} sent`);
  for (const route of report.routes) {
    const sent = report.histogram.sent(route);
    assert.ok(sent >= 200, `${why}: ${route} got only ${sent} requests`);
  }
});
