/**
 * The traffic sparkline, rendered on the server: two lines scaled to the
 * peak with the newest point at the right edge, and the same figures in
 * words for screen readers; and `useRates`, which keeps each row's history
 * between polls, in a real browser.
 */
import assert from "node:assert/strict";
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { type Rate, SPARK_POINTS, Sparkline } from "./sparkline.tsx";
import { serveModulePage, uiModule } from "./_fixture.ts";

function render(rates: Rate[] | undefined): string {
  return renderToString(h(Sparkline, { rates, label: "tcp/web" }));
}

/** The `x,y` points of the polyline of `cls`. */
function points(svg: string, cls: string): [number, number][] {
  const list = new RegExp(`class="${cls}" points="([^"]*)"`).exec(svg)?.[1];
  assert.ok(list !== undefined, `${cls} in ${svg}`);
  return list.split(" ").map((p) => p.split(",").map(Number) as [number, number]);
}

Deno.test("a sparkline without figures draws only its base line and says so", () => {
  for (const svg of [render(undefined), render([])]) {
    assert.ok(svg.includes('aria-label="tcp/web: no traffic figures yet"'), svg);
    assert.ok(svg.includes("<title>tcp/web: no traffic figures yet</title>"));
    assert.ok(svg.includes('data-points="0"'));
    assert.ok(!svg.includes("<polyline"));
    assert.ok(svg.includes('class="spark-base"'));
  }
});

Deno.test("up and down are drawn to the peak, newest at the right edge, and said in words", () => {
  const svg = render([{ up: 0, down: 2048 }, { up: 1024, down: 512 }, { up: 4096, down: 0 }]);
  assert.ok(svg.includes('data-points="3"'));
  assert.ok(svg.includes('data-peak="4096"'));
  const words = "tcp/web: now 4.0 KiB/s up, 0 B/s down; peak 4.0 KiB/s in the last 6 s";
  assert.ok(svg.includes(`aria-label="${words}"`), svg);
  assert.ok(svg.includes(`<title>${words}</title>`));
  const up = points(svg, "spark-up");
  const down = points(svg, "spark-down");
  // x: one step per poll, the last at 120 (the width); y: 23 is nothing, 1 is the peak.
  const step = 120 / (SPARK_POINTS - 1);
  assert.deepEqual(up.map(([x]) => x), [27, 28, 29].map((i) => Number((i * step).toFixed(1))));
  assert.deepEqual(up.map(([, y]) => y), [23, 17.5, 1]);
  assert.deepEqual(down.map(([, y]) => y), [12, 20.3, 23]);
});

Deno.test("a quiet row keeps a peak of one byte a second, so nothing divides by zero", () => {
  const svg = render([{ up: 0, down: 0 }]);
  assert.ok(svg.includes('data-peak="1"'));
  assert.deepEqual(points(svg, "spark-up"), [[120, 23]]);
  assert.ok(svg.includes("now 0 B/s up, 0 B/s down; peak 1 B/s in the last 2 s"));
});

/** Renders `useRates` over rows the test hands in (`answer(rows)`, `rerender()`), keyed by name. */
const RATES_ENTRY = `
import { render } from "preact";
import { useState } from "preact/hooks";
import { useRates } from "${uiModule("sparkline.tsx")}";
const w = window as any;
function Probe() {
  const [rows, setRows] = useState<any[] | undefined>(undefined);
  const [, setTick] = useState(0);
  w.answer = (next: any[]) => setRows(next);
  w.rerender = () => setTick((t) => t + 1);
  w.rates = Object.fromEntries(useRates(rows, (r: any) => r.name));
  w.renders = (w.renders ?? 0) + 1;
  return null;
}
render(<Probe />, document.getElementById("root")!);
w.ready = true;
`;

// deno-lint-ignore no-explicit-any
type Win = any;

Deno.test("useRates adds a point per answer, per row, and forgets rows that left", async () => {
  await using s = await serveModulePage({ entry: RATES_ENTRY });
  const page = await s.open("/");
  await page.waitForFunction(() => (window as Win).ready, null, { timeout: 10_000 });
  const row = (name: string, up: number, down: number) => ({
    name,
    state: { bytesUp: up, bytesDown: down },
  });
  /** Hands in one answer and returns the rates after it has rendered. */
  const answer = async (rows: unknown[]) => {
    const before = await page.evaluate(() => (window as Win).renders);
    await page.evaluate((r) => (window as Win).answer(r), rows);
    await page.waitForFunction((n) => (window as Win).renders > n, before, { timeout: 10_000 });
    return await page.evaluate(() => (window as Win).rates) as Record<string, Rate[]>;
  };

  assert.deepEqual(await answer([row("a", 0, 0), { name: "no-state" }]), { a: [] });
  const second = await answer([row("a", 5000, 0), row("b", 10, 10)]);
  assert.deepEqual(Object.keys(second).sort(), ["a", "b"]);
  assert.equal(second.a.length, 1);
  assert.ok(second.a[0].up > 0 && second.a[0].down === 0, JSON.stringify(second.a));
  assert.deepEqual(second.b, [], "a new row starts its history");

  // A re-render without a new answer adds nothing.
  const renders = await page.evaluate(() => (window as Win).renders);
  await page.evaluate(() => (window as Win).rerender());
  await page.waitForFunction((n) => (window as Win).renders > n, renders, { timeout: 10_000 });
  assert.equal((await page.evaluate(() => (window as Win).rates)).a.length, 1);

  // A total that went down (the mapping was made again) counts as nothing, not as negative.
  const reset = await answer([row("a", 100, 0)]);
  assert.deepEqual(reset.a[1], { up: 0, down: 0 });
  assert.deepEqual(Object.keys(reset), ["a"], "b left the list and is forgotten");

  let last: Record<string, Rate[]> = {};
  for (let i = 1; i <= SPARK_POINTS + 5; i++) last = await answer([row("a", 100 + i, 0)]);
  assert.equal(last.a.length, SPARK_POINTS, "the window never grows past its points");
});
