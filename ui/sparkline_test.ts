/**
 * The traffic sparkline, rendered on the server: two lines scaled to the
 * peak with the newest point at the right edge, and the same figures in
 * words for screen readers. (`useRates`, which keeps the history between
 * polls, runs in the browser: tests/ui/ui_traffic_test.ts watches it move.)
 */
import assert from "node:assert/strict";
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { type Rate, SPARK_POINTS, Sparkline } from "./sparkline.tsx";

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
