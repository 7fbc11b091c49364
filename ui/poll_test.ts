/**
 * `usePoll` in a real browser against a loopback API: it asks again and
 * again, one request at a time; a refusal (403) stops it, other failures
 * keep the last data shown with the reason; a new path shows nothing (or,
 * with `keepStale`, the old data) until it answers; `reload` asks at once.
 * A second poller on a counting path is the clock: "while it answered five
 * times" instead of a fixed sleep.
 */
import assert from "node:assert/strict";
import { serveModulePage, uiModule } from "./_fixture.ts";

/** Mounts probes (`mount(id, path, intervalMs, keepStale)`); each reports its poll in `probes[id]`. */
const ENTRY = `
import { render } from "preact";
import { useState } from "preact/hooks";
import { usePoll } from "${uiModule("poll.ts")}";
const w = window as any;
// Every request the page starts, counted by path: the browser itself holds back a second GET
// of a URL while the first is out (its cache lock), so the server's count cannot tell.
w.started = {};
const realFetch = window.fetch;
window.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
  const path = String(input);
  w.started[path] = (w.started[path] ?? 0) + 1;
  return realFetch(input, init);
};
w.probes = {};
w.first = {};
function Probe(props: { id: string; path: string; interval: number; keep: boolean }) {
  const [path, setPath] = useState<string | null>(props.path);
  const p = usePoll<unknown>(path, props.interval, props.keep);
  const seen = { data: p.data, error: p.error, status: p.status, loading: p.loading };
  w.first[props.id] ??= seen;
  w.probes[props.id] = { ...seen, setPath, reload: p.reload };
  return null;
}
w.mount = (id: string, path: string, interval: number, keep = false) => {
  const el = document.createElement("div");
  document.body.append(el);
  render(<Probe id={id} path={path} interval={interval} keep={keep} />, el);
};
w.ready = true;
`;

/** A gate a held request waits at until the test opens it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

// deno-lint-ignore no-explicit-any
type Win = any;

Deno.test("usePoll asks one request at a time, stops at a refusal, keeps data through failures", async (t) => {
  const counts = new Map<string, number>();
  const held = gate();
  const heldB = gate();
  let flakyOk = false;
  await using s = await serveModulePage({
    entry: ENTRY,
    api: async (req) => {
      const path = new URL(req.url).pathname;
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      if (path.startsWith("/api/count")) return Response.json({ n });
      if (path === "/api/held") {
        await held.opened;
        return Response.json({ held: n });
      }
      if (path === "/api/b") {
        await heldB.opened;
        return Response.json({ p: "b" });
      }
      if (path === "/api/a") return Response.json({ p: "a" });
      if (path === "/api/denied") {
        return Response.json({ error: { code: "forbidden", message: "Not yours" } }, {
          status: 403,
        });
      }
      // /api/flaky: one answer, then failures until the test says otherwise.
      if (n === 1 || flakyOk) return Response.json({ v: flakyOk ? 2 : 1 });
      return Response.json({ error: { code: "boom", message: "Broken" } }, { status: 500 });
    },
  });
  const page = await s.open("/");
  try {
    /** Waits (10 s at most) until `fn` is true in the page. */
    const until = (fn: () => unknown) => page.waitForFunction(fn, null, { timeout: 10_000 });
    await until(() => (window as Win).ready);
    const mount = (id: string, path: string, interval = 30, keep = false) =>
      page.evaluate(([i, p, n, k]) => (window as Win).mount(i, p, n, k), [
        id,
        path,
        interval,
        keep,
      ]);
    const started = (path: string) => page.evaluate((p) => (window as Win).started[p], path);
    const probe = (id: string) => page.evaluate((i) => (window as Win).probes[i], id);
    /** Waits until the clock poller has answered `ticks` more times. */
    const clock = async (id: string, ticks: number) => {
      const now = (await probe(id))?.data?.n ?? 0;
      await page.waitForFunction(
        ([i, n]) => ((window as Win).probes[i]?.data?.n ?? 0) >= n,
        [id, now + ticks] as const,
        { timeout: 10_000 },
      );
    };

    await t.step("it shows loading until the first answer, then asks again and again", async () => {
      await mount("count", "/api/count");
      await clock("count", 3);
      const first = await page.evaluate(() => (window as Win).first.count);
      assert.deepEqual(first, {
        data: undefined,
        error: undefined,
        status: undefined,
        loading: true,
      });
      const now = await probe("count");
      assert.equal(now.loading, false);
      assert.equal(now.error, undefined);
    });

    await t.step(
      "while a request is out no other is sent; its answer resumes the polling",
      async () => {
        await mount("held", "/api/held");
        await clock("count", 5);
        assert.equal(await started("/api/held"), 1);
        assert.equal((await probe("held")).loading, true);
        held.open();
        await until(() => (window as Win).probes.held.data?.held >= 2);
      },
    );

    await t.step("a refusal stops the polling of its path and is shown", async () => {
      await mount("denied", "/api/denied");
      await until(() => (window as Win).probes.denied.status === 403);
      await clock("count", 5);
      assert.equal(await started("/api/denied"), 1);
      const denied = await probe("denied");
      assert.equal(denied.error, "Not yours");
      assert.equal(denied.data, undefined);
      assert.equal(denied.loading, false);
    });

    await t.step(
      "a failure keeps the last data with its reason; the next success clears it",
      async () => {
        await mount("flaky", "/api/flaky");
        await until(() => (window as Win).probes.flaky.status === 500);
        const failing = await probe("flaky");
        assert.deepEqual(failing.data, { v: 1 });
        assert.equal(failing.error, "Broken");
        flakyOk = true;
        await until(() => (window as Win).probes.flaky.data?.v === 2);
        const healed = await probe("flaky");
        assert.equal(healed.error, undefined);
        assert.equal(healed.status, undefined);
      },
    );

    await t.step(
      "a new path shows nothing until it answers, or the old data with keepStale",
      async () => {
        await mount("fresh", "/api/a");
        await mount("stale", "/api/a", 30, true);
        await until(() =>
          ["fresh", "stale"].every((i) => (window as Win).probes[i].data?.p === "a")
        );
        await page.evaluate(() => {
          (window as Win).probes.fresh.setPath("/api/b");
          (window as Win).probes.stale.setPath("/api/b");
        });
        await until(() => (window as Win).probes.fresh.loading);
        assert.equal((await probe("fresh")).data, undefined);
        const stale = await probe("stale");
        assert.deepEqual([stale.data, stale.loading], [{ p: "a" }, true]);
        heldB.open();
        await until(() =>
          ["fresh", "stale"].every((i) => (window as Win).probes[i].data?.p === "b")
        );
      },
    );

    await t.step("reload asks at once, without waiting for the next tick", async () => {
      await mount("slow", "/api/count-slow", 3_600_000);
      await until(() => (window as Win).probes.slow.data?.n === 1);
      await page.evaluate(() => (window as Win).probes.slow.reload());
      await until(() => (window as Win).probes.slow.data?.n === 2);
    });
    assert.deepEqual(s.browser.unexpectedErrors([403, 500]), []);
  } finally {
    held.open();
    heldB.open();
    await page.close();
  }
});
