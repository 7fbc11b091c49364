/**
 * Rate-limited log lines: the first of each kind is written, the rest of the
 * interval only counted, and the next line written carries the count; the
 * memory of kinds is bounded.
 */
import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import { LogThrottle } from "./log_throttle.ts";

function recorded(intervalMs?: number) {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("hub", { sink: (l) => lines.push(JSON.parse(l)) });
  return { lines, quiet: new LogThrottle(log, intervalMs) };
}

Deno.test("one line per kind within the interval; a kind is the phrase, the err and the code", () => {
  const { lines, quiet } = recorded();
  quiet.warn("handshake refused", { peer: "1.2.3.4", err: "bad certificate" });
  quiet.warn("handshake refused", { peer: "5.6.7.8", err: "bad certificate" });
  quiet.warn("handshake refused", { peer: "1.2.3.4", err: "unknown ca" });
  quiet.warn("handshake refused", { err: "unknown ca", code: "x" });
  quiet.info("peer refused", { err: "bad certificate" });
  quiet.info("peer refused", { err: "bad certificate" });
  assert.deepEqual(lines.map((l) => [l.level, l.msg, l.err, l.peer]), [
    ["warn", "handshake refused", "bad certificate", "1.2.3.4"],
    ["warn", "handshake refused", "unknown ca", "1.2.3.4"],
    ["warn", "handshake refused", "unknown ca", undefined],
    ["info", "peer refused", "bad certificate", undefined],
  ]);
  assert.ok(lines.every((l) => l.count === undefined));
});

Deno.test("after the interval the next line of a kind is written with how many were left out", async () => {
  const { lines, quiet } = recorded(100);
  quiet.warn("limit hit", { code: "too_many" });
  for (let i = 0; i < 3; i++) quiet.warn("limit hit", { code: "too_many" });
  assert.equal(lines.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 120)); // the interval passes
  quiet.warn("limit hit", { code: "too_many" });
  assert.equal(lines.length, 2);
  assert.equal(lines[1].count, 3);
  await new Promise((resolve) => setTimeout(resolve, 120));
  quiet.warn("limit hit", { code: "too_many" });
  assert.equal(lines.length, 3);
  assert.equal(lines[2].count, undefined, "nothing was left out this time");
});

Deno.test("the throttle remembers at most 1,000 kinds, then starts afresh", () => {
  const { lines, quiet } = recorded();
  quiet.warn("refused", { err: "kind 0" });
  for (let i = 1; i < 1_000; i++) quiet.warn("refused", { err: `kind ${i}` });
  quiet.warn("refused", { err: "kind 0" });
  assert.equal(lines.length, 1_000, "kind 0 is still remembered among 1,000");
  quiet.warn("refused", { err: "kind 1000" }); // the 1,001st kind clears the memory
  quiet.warn("refused", { err: "kind 0" });
  assert.equal(lines.length, 1_002);
  assert.equal(lines.at(-1)!.err, "kind 0");
});
