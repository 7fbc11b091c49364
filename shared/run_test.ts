/**
 * `runUntilSignal` in real child processes (it exits the process): a start
 * failure exits 1 with one log line; SIGTERM and SIGINT close what the start
 * returned and exit 0; a signal during the start waits for it to finish and
 * then closes it; a failing close is logged and still exits 0.
 */
import assert from "node:assert/strict";

const RUN = new URL("./run.ts", import.meta.url).href;
const LOG = new URL("./log.ts", import.meta.url).href;

/**
 * A child running `runUntilSignal` with `start` (a function body given
 * `say(text)`, `stdinLine()` and `alive`, an interval that keeps the process
 * up as a listener would). Its log lines and what it says share stdout, in order.
 */
function child(start: string) {
  const code = `
    import { runUntilSignal } from ${JSON.stringify(RUN)};
    import { Logger } from ${JSON.stringify(LOG)};
    const say = (text) => console.log(JSON.stringify({ say: text }));
    const alive = setInterval(() => {}, 60_000);
    const stdinLine = async () => {
      const reader = Deno.stdin.readable.getReader();
      await reader.read();
      reader.releaseLock();
    };
    const log = new Logger("test", { sink: (line) => console.log(line) });
    // The signal listeners are added once the start has begun: it speaks after its first await.
    await runUntilSignal(log, async () => { await null; ${start} });
  `;
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  /** What a line says: `say:…` or the log line's message (and its `err`). */
  const describe = (line: string) => {
    const o = JSON.parse(line);
    return "say" in o ? `say:${o.say}` : o.err ? `${o.msg}: ${o.err}` : o.msg;
  };
  return {
    proc,
    /** The next line of stdout, described; fails after 10 s. */
    async next(): Promise<string> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no line: ${buffered}`)), 10_000);
      });
      try {
        while (!buffered.includes("\n")) {
          const { value, done } = await Promise.race([reader.read(), timeout]);
          if (done) throw new Error(`stdout ended: ${buffered}`);
          buffered += value;
        }
      } finally {
        clearTimeout(timer);
      }
      const at = buffered.indexOf("\n");
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      return describe(line);
    },
    /** Waits for the exit (SIGKILL after 10 s): its code and the rest of stdout, described. */
    async end(): Promise<{ code: number; rest: string[] }> {
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      try {
        const { code } = await proc.status;
        for (let r = await reader.read(); !r.done; r = await reader.read()) buffered += r.value;
        await proc.stdin.close().catch(() => {});
        return { code, rest: buffered.split("\n").filter(Boolean).map(describe) };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

Deno.test("a start that throws is logged once and exits 1", async () => {
  const c = child(`throw new Error("port 7443 is taken");`);
  assert.deepEqual(await c.end(), { code: 1, rest: ["start failed: port 7443 is taken"] });
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} closes what the start returned and exits 0`, async () => {
    const c = child(`say("started");
      return { close: async () => { clearInterval(alive); say("closed"); } };`);
    assert.equal(await c.next(), "say:started");
    c.proc.kill(signal);
    assert.deepEqual(await c.end(), { code: 0, rest: ["stopping", "say:closed"] });
  });
}

Deno.test("a signal during the start waits for the start to finish, then closes it", async () => {
  const c = child(`say("starting"); await stdinLine(); say("started");
    return { close: async () => { clearInterval(alive); say("closed"); } };`);
  assert.equal(await c.next(), "say:starting");
  c.proc.kill("SIGTERM");
  assert.equal(await c.next(), "stopping");
  // Only now does the start finish: the stop waited for it, and closes what it returned.
  const writer = c.proc.stdin.getWriter();
  await writer.write(new TextEncoder().encode("go\n"));
  writer.releaseLock();
  assert.deepEqual(await c.end(), { code: 0, rest: ["say:started", "say:closed"] });
});

Deno.test("a close that throws is logged and the process still exits 0", async () => {
  const c = child(
    `say("started"); return { close: async () => { throw new Error("disk gone"); } };`,
  );
  assert.equal(await c.next(), "say:started");
  c.proc.kill("SIGTERM");
  assert.deepEqual(await c.end(), { code: 0, rest: ["stopping", "stop failed: disk gone"] });
});
