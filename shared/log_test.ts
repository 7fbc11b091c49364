/**
 * JSON-lines logging: one parseable line per event, the level filter, and a
 * broken sink that never throws into the caller.
 */
import assert from "node:assert/strict";
import { errText, Logger } from "./log.ts";

Deno.test("each event is one JSON line with time, level, component, msg and fields", () => {
  const lines: string[] = [];
  const log = new Logger("ca", { sink: (l) => lines.push(l) });
  log.info("certificate issued", { user: "root", serial: "ab12" });
  log.error("request failed", { status: 500, err: "boom" });
  assert.equal(lines.length, 2);
  for (const line of lines) assert.ok(!line.includes("\n"));
  const first = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(first), ["time", "level", "component", "msg", "user", "serial"]);
  assert.equal(new Date(first.time).toISOString(), first.time);
  assert.deepEqual(
    { level: first.level, component: first.component, msg: first.msg, user: first.user },
    { level: "info", component: "ca", msg: "certificate issued", user: "root" },
  );
  assert.equal(JSON.parse(lines[1]).status, 500);
});

Deno.test("lines below the logger's level are dropped", () => {
  const lines: string[] = [];
  const log = new Logger("hub", { level: "warn", sink: (l) => lines.push(l) });
  log.debug("a");
  log.info("b");
  log.warn("c");
  log.error("d");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["c", "d"]);
  const quiet: string[] = [];
  new Logger("x", { sink: (l) => quiet.push(l) }).debug("hidden");
  assert.deepEqual(quiet, []);
});

Deno.test("a sink that throws does not reach the caller", () => {
  const log = new Logger("ca", {
    sink: () => {
      throw new Error("stderr closed");
    },
  });
  log.info("still fine");
});

Deno.test("errText gives a message without a stack", () => {
  assert.equal(errText(new Error("bad thing")), "bad thing");
  assert.equal(errText("plain"), "plain");
  assert.equal(errText(42), "42");
});
