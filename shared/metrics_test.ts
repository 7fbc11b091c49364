import assert from "node:assert/strict";
import { Logger } from "./log.ts";
import { Metrics, RTT_BUCKETS, serveMetrics } from "./metrics.ts";
import { promtool } from "../tests/fixtures/promtool.ts";

Deno.test("metrics: served at /metrics only, in a format promtool accepts, with process figures", async () => {
  const metrics = new Metrics();
  const opened = metrics.counter("ztm_test_tunnels_opened_total", "Tunnels opened", ["outcome"]);
  let sessions = 0;
  metrics.gauge("ztm_test_sessions", "Sessions open", [], (g) => g.set(sessions));
  const rtt = metrics.histogram("ztm_test_ping_rtt_seconds", "Ping round trip", RTT_BUCKETS, [
    "hub",
  ]);
  opened.inc({ outcome: "ok" }, 3);
  opened.inc({ outcome: "refused" });
  sessions = 7;
  rtt.observe({ hub: "hub-1:8888" }, 0.002);
  const lines: string[] = [];
  const server = serveMetrics(
    { hostname: "127.0.0.1", port: 0 },
    metrics,
    new Logger("test", { sink: (l) => lines.push(l) }),
  );
  try {
    const base = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^ztm_test_tunnels_opened_total\{outcome="ok"\} 3$/m);
    assert.match(text, /^ztm_test_sessions 7$/m);
    assert.match(text, /^ztm_test_ping_rtt_seconds_bucket\{le="0\.005",hub="hub-1:8888"\} 1$/m);
    assert.match(text, /^ztm_process_resident_memory_bytes \d+/m);
    assert.match(text, /^ztm_nodejs_eventloop_lag_seconds /m);
    const checked = await promtool(text);
    assert.equal(checked.code, 0, checked.out);
    // The check is live: a counter without _total is reported.
    const bad = await promtool("# HELP x a\n# TYPE x counter\nx 1\n");
    assert.match(bad.out, /counter metrics should have "_total" suffix/);
    const other = await fetch(`${base}/`);
    assert.equal(other.status, 404);
    await other.text();
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.text();
    assert.ok(lines.some((l) => l.includes('"metrics listening"')), lines.join("\n"));
  } finally {
    await server.shutdown();
  }
});
