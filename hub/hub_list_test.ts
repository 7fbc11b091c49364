/**
 * Following the CA's hub list: what of its answer reaches agents (well-formed
 * entries, bounded, in a stable order), when they are told (only on a
 * change), how failures are logged, and when the CA is asked.
 */
import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import {
  type HubListEntry,
  MAX_HUB_ADDRESSES,
  MAX_HUB_CERTIFICATE_CHARS,
  MAX_HUB_LIST,
} from "@ztm/shared/protocol";
import { eventually } from "../tests/fixtures/harness.ts";
import { HubList } from "./hub_list.ts";

type Answer = { status: number; body: string };

/** A hub list whose CA answers what the test queues, one answer per ask. */
function following(everyMs = 60_000) {
  const logs: Record<string, unknown>[] = [];
  const told: HubListEntry[][] = [];
  const answers: (Answer | Error)[] = [];
  const asks: PromiseWithResolvers<void>[] = [];
  let asked = 0;
  const list = new HubList({
    log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }),
    everyMs,
    onChange: (hubs) => told.push(hubs),
    ask: async () => {
      asked++;
      const gate = Promise.withResolvers<void>();
      asks.push(gate);
      await gate.promise;
      const next = answers.shift() ?? new Error("no answer queued");
      if (next instanceof Error) throw next;
      return next;
    },
  });
  return {
    list,
    logs,
    told,
    get asked() {
      return asked;
    },
    /** Lets the oldest waiting ask have `answer`, and waits until the list has dealt with it. */
    async answer(answer: Answer | Error) {
      const n = asked;
      await eventually(() => asks.length > 0, 5_000, "an ask of the CA");
      answers.push(answer);
      asks.shift()!.resolve();
      await eventually(() => answers.length === 0, 5_000, "the answer taken");
      await new Promise((resolve) => setTimeout(resolve, 0)); // its handling settles
      return n;
    },
    async [Symbol.asyncDispose]() {
      for (const a of asks) a.resolve();
      await list.close();
    },
  };
}

const ok = (hubs: unknown): Answer => ({ status: 200, body: JSON.stringify(hubs) });
const hub = (address: string, certificate = `CERT ${address}`) => ({
  control: [address],
  enroll: [],
  certificate,
});

Deno.test("agents are told the well-formed hubs, each bounded, sorted by first address, at most the list's size", async () => {
  await using f = following();
  f.list.start();
  const many = Array.from({ length: MAX_HUB_LIST + 5 }, (_, i) => hub(`h${100 + i}:1`));
  await f.answer(ok([
    hub("zeta:1"),
    { control: [], certificate: "C" }, // no address
    { control: ["x:1"] }, // no certificate
    { control: ["y:1"], certificate: "C".repeat(MAX_HUB_CERTIFICATE_CHARS + 1) },
    { control: [42, "a".repeat(262), "alpha:1"], certificate: "A" },
    { control: Array.from({ length: 20 }, (_, i) => `many${i}:1`), certificate: "M" },
    null,
    "text",
    ...many,
  ]));
  assert.equal(f.told.length, 1);
  const hubs = f.told[0];
  assert.equal(hubs.length, MAX_HUB_LIST);
  assert.deepEqual(hubs[0], { addresses: ["alpha:1"], certificate: "A" });
  assert.equal(hubs.find((h) => h.certificate === "M")?.addresses.length, MAX_HUB_ADDRESSES);
  assert.ok(!hubs.some((h) => h.addresses[0] === "y:1" || h.addresses[0] === "x:1"));
  const firsts = hubs.map((h) => h.addresses[0]);
  assert.deepEqual(firsts, [...firsts].sort((a, b) => a.localeCompare(b)));
  assert.ok(f.logs.some((l) => l.msg === "hub list changed" && l.count === MAX_HUB_LIST));
});

Deno.test("agents are told only when the list changes; a failing CA is logged once and the last list stays", async () => {
  await using f = following();
  f.list.start();
  await f.answer(ok([hub("b:1"), hub("a:1")]));
  f.list.refresh();
  await f.answer(ok([hub("a:1"), hub("b:1")])); // the same list in another order
  assert.equal(f.told.length, 1);
  for (
    const failure of [
      { status: 503, body: "" },
      ok({ not: "a list" }),
      { status: 200, body: "[" + " ".repeat(2 * 1024 * 1024) + "]" },
      new Error("connection refused"),
    ]
  ) {
    f.list.refresh();
    await f.answer(failure);
  }
  assert.equal(f.told.length, 1, "a failure tells agents nothing");
  const warnings = f.logs.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 1, "one warning for a run of failures");
  assert.equal(warnings[0].err, "the CA answered 503");
  f.list.refresh();
  await f.answer(ok([hub("a:1")]));
  assert.ok(f.logs.some((l) => l.msg === "hub list from the CA again" && l.count === 1));
  assert.deepEqual(f.told.at(-1), [{ addresses: ["a:1"], certificate: "CERT a:1" }]);
});

Deno.test("a refresh during an ask asks once more after it, and start() then adds nothing", async () => {
  await using f = following();
  f.list.refresh();
  f.list.refresh();
  f.list.refresh();
  f.list.start();
  assert.equal(f.asked, 1);
  await f.answer(ok([hub("a:1")]));
  await eventually(() => f.asked === 2, 5_000, "the second ask");
  await f.answer(ok([hub("b:1")]));
  assert.equal(f.asked, 2, "three refreshes during one ask make one more");
  assert.equal(f.told.length, 2);
});

Deno.test("the CA is asked again every interval", async () => {
  await using f = following(50);
  f.list.start();
  await f.answer(ok([hub("a:1")]));
  await eventually(() => f.asked === 2, 5_000, "the ask after the interval");
  await f.answer(ok([hub("a:1")]));
  await eventually(() => f.asked === 3, 5_000, "the next one");
  await f.answer(ok([hub("a:1")]));
  assert.equal(f.told.length, 1);
});

Deno.test("after close() the CA is not asked again", async () => {
  const f = following(10);
  f.list.start();
  await f.answer(ok([]));
  await eventually(() => f.asked === 2, 5_000, "the periodic ask");
  const closing = f.list.close(); // waits for the ask under way
  await f.answer(ok([]));
  await closing;
  const asked = f.asked;
  f.list.refresh(); // an ask would begin at once, synchronously
  f.list.start();
  assert.equal(f.asked, asked);
  assert.deepEqual(f.told, [[]]);
  await f[Symbol.asyncDispose]();
});
