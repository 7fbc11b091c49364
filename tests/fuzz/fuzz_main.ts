/**
 * `deno task fuzz`: a longer fuzz pass than CI's, over the same mesh and
 * routes (see `fuzz_mesh.ts`). Flags: `--seed=N` (default: random, printed),
 * `--per-route=N` (default 3000, over 100,000 requests), `--concurrency=N`
 * (default 8). Exits 1 when the run finds a 5xx, a crash or an unasked change.
 */
import { parseArgs } from "node:util";
import { Harness } from "../fixtures/harness.ts";
import { fuzzSeed } from "./fuzz.ts";
import { fuzzMesh } from "./fuzz_mesh.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string" },
    "per-route": { type: "string", default: "3000" },
    concurrency: { type: "string", default: "8" },
  },
});
if (values.seed) Deno.env.set("ZTM_FUZZ_SEED", values.seed);
const seed = fuzzSeed();
console.log(`fuzz seed ${seed} (repeat with --seed=${seed})`);
let failed = false;
{
  await using h = new Harness();
  const report = await fuzzMesh(h, {
    seed,
    perRoute: Number(values["per-route"]),
    concurrency: Number(values.concurrency),
    onProgress: (done, total) => console.log(`${done} of ${total} requests sent`),
  });
  console.log(report.histogram.format());
  console.log(
    `${report.histogram.total()} requests on ${report.routes.length} routes in ${report.ms} ms, ` +
      `${report.writes} changes answered 2xx`,
  );
  for (
    const [what, list] of [
      ["crashed", report.crashed],
      ["5xx or unanswered", report.failures],
      ["examples", report.failures.length ? report.examples : []],
      ["state changed unasked", report.unexplained],
      ["logs", report.logs],
    ] as const
  ) {
    if (list.length) console.log(`${what}:\n  ${list.join("\n  ")}`);
  }
  failed = report.crashed.length + report.failures.length + report.unexplained.length > 0;
}
Deno.exit(failed ? 1 : 0);
