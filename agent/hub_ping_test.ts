import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import { type HubPingOptions, startHubPing } from "./hub_ping.ts";
import { H2Pair } from "../tests/fixtures/h2_pair.ts";
import { eventually } from "../tests/fixtures/harness.ts";

const WAIT_MS = 10_000;

/** Starts PINGs on the pair's session; resolves `failed` with the first reason given to `fail`. */
function ping(pair: H2Pair, opts: Partial<HubPingOptions> = {}) {
  const lines: Record<string, unknown>[] = [];
  const rtts: number[] = [];
  const reasons: string[] = [];
  let failed!: (why: string) => void;
  const first = new Promise<string>((resolve) => (failed = resolve));
  startHubPing(pair.session, {
    everyMs: 20,
    timeoutMs: 200,
    log: new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) }),
    mesh: "home",
    notAfter: () => Infinity,
    answered: (rtt) => rtts.push(rtt),
    fail: (why) => {
      reasons.push(why);
      failed(why);
      // As the link does: the session ends with the reason.
      pair.session.destroy();
    },
    ...opts,
  });
  return { lines, rtts, reasons, first };
}

Deno.test("a hub that answers its PINGs reports each round trip and keeps the session", async () => {
  await using pair = await H2Pair.start();
  const p = ping(pair);
  // PINGs sent over 400 ms, twice the PING timeout: an answered PING must not time out later.
  await eventually(() => p.rtts.length >= 20, WAIT_MS, "twenty PINGs answered");
  assert.ok(p.rtts.every((rtt) => Number.isFinite(rtt) && rtt >= 0), String(p.rtts));
  assert.deepEqual(p.reasons, []);
  assert.equal(pair.session.destroyed, false);
  // Closing the session stops the PINGs (the sanitizer fails the test on a timer left running).
  pair.session.destroy();
});

Deno.test("a hub that stops answering PINGs ends the session with the reason, once", async () => {
  await using pair = await H2Pair.start();
  const p = ping(pair);
  await eventually(() => p.rtts.length >= 1, WAIT_MS, "a PING answered");
  pair.silence();
  assert.equal(await p.first, "hub did not answer PING within 0.2 s");
  assert.ok(p.lines.some((l) => l.msg === "hub unresponsive; reconnecting" && l.mesh === "home"));
  await eventually(() => pair.session.destroyed, WAIT_MS, "session destroyed");
  assert.deepEqual(p.reasons, ["hub did not answer PING within 0.2 s"]);
});

Deno.test("a hub whose certificate has expired is left at the next PING", async () => {
  await using pair = await H2Pair.start();
  let notAfter = Infinity;
  const p = ping(pair, { notAfter: () => notAfter });
  await eventually(() => p.rtts.length >= 1, WAIT_MS, "a PING answered");
  // A renewal may move notAfter; here it passes.
  notAfter = Date.now() - 1;
  assert.equal(await p.first, "hub certificate expired");
  assert.ok(p.lines.some((l) => l.msg === "hub certificate expired; disconnecting"));
  assert.deepEqual(p.reasons, ["hub certificate expired"]);
});
