/**
 * `runUntilSignal` in real child processes (it exits the process): a start
 * failure exits 1 with one log line; SIGTERM and SIGINT close what the start
 * returned and exit 0; a signal during the start waits for it to finish and
 * then closes it; a failing close is logged and still exits 0.
 */
import assert from "node:assert/strict";
import { type Proc, startProc } from "../tests/fixtures/harness.ts";

const RUN = new URL("./run.ts", import.meta.url).href;
const LOG = new URL("./log.ts", import.meta.url).href;

/**
 * A child running `runUntilSignal` with `start`, a function body given `log`
 * (JSON lines on stderr) and `alive`, an interval that keeps the process up
 * as a listener would. The signal listeners are added once the start has
 * begun, so `start` logs nothing before its first await.
 */
function child(start: string): Proc {
  const code = `
    import { runUntilSignal } from ${JSON.stringify(RUN)};
    import { Logger } from ${JSON.stringify(LOG)};
    const log = new Logger("test");
    const alive = setInterval(() => {}, 60_000);
    await runUntilSignal(log, async () => { await null; ${start} });
  `;
  return startProc("run", Deno.execPath(), ["eval", code]);
}

/**
 * Waits for the child's exit (SIGKILL after 10 s) and its output; its exit
 * code and the messages (with their `err`) of its log lines.
 */
async function finish(p: Proc): Promise<{ code: number; messages: unknown[] }> {
  const timer = setTimeout(() => p.signal("SIGKILL"), 10_000);
  try {
    await p.status;
  } finally {
    clearTimeout(timer);
  }
  const { code } = await p.kill(); // already exited: only drains the output
  return { code, messages: p.logs.map((l) => (l.err ? `${l.msg}: ${l.err}` : l.msg)) };
}

const CLOSE = `return { close: async () => { clearInterval(alive); log.info("closed"); } };`;

Deno.test("a start that throws is logged once and exits 1", async () => {
  const p = child(`throw new Error("port 7443 is taken");`);
  assert.deepEqual(await finish(p), { code: 1, messages: ["start failed: port 7443 is taken"] });
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} closes what the start returned and exits 0`, async () => {
    const p = child(`log.info("started"); ${CLOSE}`);
    try {
      await p.waitForLog((l) => l.msg === "started", 10_000);
      p.signal(signal);
      assert.deepEqual(await finish(p), { code: 0, messages: ["started", "stopping", "closed"] });
    } finally {
      await p.kill();
    }
  });
}

Deno.test("a signal during the start waits for the start to finish, then closes it", async () => {
  const p = child(`log.info("starting");
    await new Promise((go) => Deno.addSignalListener("SIGUSR1", go));
    log.info("started"); ${CLOSE}`);
  try {
    await p.waitForLog((l) => l.msg === "starting", 10_000);
    p.signal("SIGTERM");
    await p.waitForLog((l) => l.msg === "stopping", 10_000);
    // Only now does the start finish: the stop waited for it, and closes what it returned.
    p.signal("SIGUSR1");
    assert.deepEqual(await finish(p), {
      code: 0,
      messages: ["starting", "stopping", "started", "closed"],
    });
  } finally {
    await p.kill();
  }
});

Deno.test("a close that throws is logged and the process still exits 0", async () => {
  const p = child(`log.info("started");
    return { close: async () => { throw new Error("disk gone"); } };`);
  try {
    await p.waitForLog((l) => l.msg === "started", 10_000);
    p.signal("SIGTERM");
    assert.deepEqual(await finish(p), {
      code: 0,
      messages: ["started", "stopping", "stop failed: disk gone"],
    });
  } finally {
    await p.kill();
  }
});
