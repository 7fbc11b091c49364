import assert from "node:assert/strict";
import { Logger } from "./log.ts";
import { MAX_REFUSAL_KINDS, RefusalLog } from "./refusal_log.ts";

Deno.test("a refusal log writes the 1st, 10th, 100th… of each kind, and caps the kinds", () => {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("t", { sink: (l) => lines.push(JSON.parse(l)) });
  const refusals = new RefusalLog(log, "bad message from hub", { mesh: "m" });
  for (let i = 0; i < 1_000; i++) refusals.refused("bad_message", "Hub message has a bad field");
  refusals.refused("unknown_message", "x");
  assert.deepEqual(
    lines.map((l) => [l.code, l.count, l.mesh, l.msg]),
    [
      ["bad_message", 1, "m", "bad message from hub"],
      ["bad_message", 10, "m", "bad message from hub"],
      ["bad_message", 100, "m", "bad message from hub"],
      ["bad_message", 1000, "m", "bad message from hub"],
      ["unknown_message", 1, "m", "bad message from hub"],
    ],
  );
  for (let i = 0; i < MAX_REFUSAL_KINDS * 2; i++) refusals.refused(`kind_${i}`, "x");
  assert.equal(Object.keys(refusals.counts()).length, MAX_REFUSAL_KINDS + 1); // + "other"
  assert.equal(refusals.total, 1_001 + MAX_REFUSAL_KINDS * 2);
});
