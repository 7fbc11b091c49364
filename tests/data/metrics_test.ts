/**
 * `/metrics` of the hub (`--metrics-listen`) and the agent (`--metrics-listen`
 * and `GET /api/metrics` behind its token), scraped by a real Prometheus
 * (Debian's `prometheus`) during a mesh test and checked by `promtool`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { addPortMapping, addService, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import {
  echoRoundTrip,
  equalBytes,
  freePort,
  openConnection,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";
import { promtool } from "../fixtures/promtool.ts";

/** promtool found nothing wrong and said nothing (its words in the failure). */
function assertPromtoolClean(r: { code: number; out: string }): void {
  assert.equal(`${r.code} ${r.out}`.trim(), "0");
}

/** The value of the sample `series` (name and labels as exposed) in `text`, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** One value of an instant query at Prometheus, or undefined while it has none. */
async function query(prom: string, q: string): Promise<number | undefined> {
  const res = await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await res.json();
  const v = body?.data?.result?.[0]?.value?.[1];
  return v === undefined ? undefined : Number(v);
}

Deno.test("Prometheus scrapes the hub and an agent during a mesh test, promtool accepts both, and the figures follow the mesh", async () => {
  await using h = new Harness();
  const [hubMetricsPort, agentMetricsPort, promPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const ca = await h.startCa();
  const hub = await h.startHub(ca, { args: [`--metrics-listen=127.0.0.1:${hubMetricsPort}`] });
  const bob = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "bob"));
  const alice = await startJoinedAgent(
    h,
    hub.address,
    await issueUser(ca.url, "alice"),
    "alice-ep",
    [`--metrics-listen=127.0.0.1:${agentMetricsPort}`],
  );
  await using echo = await startEchoServer();
  await addService(bob, "echo", echo.port, ["alice"]);
  const mapped = await freePort();
  await addPortMapping(alice, mapped, "echo");
  await eventually(() => echoRoundTrip(mapped, 1024).then(() => true), 15_000, "the mapping");

  // Both expositions pass promtool's checks as served.
  const hubText = await (await fetch(`http://127.0.0.1:${hubMetricsPort}/metrics`)).text();
  assertPromtoolClean(await promtool(hubText));
  assert.match(hubText, /^ztm_hub_sessions 2$/m);
  const agentText = await (await fetch(`http://127.0.0.1:${agentMetricsPort}/metrics`)).text();
  assertPromtoolClean(await promtool(agentText));
  assert.match(agentText, /^ztm_agent_hub_connected\{mesh="test"\} 1$/m);
  // The API's copy wants the token, like every route of the agent's API.
  const noToken = await fetch(`${alice.url}/api/metrics`);
  assert.equal(noToken.status, 401);
  await noToken.body?.cancel();
  const withToken = await api(alice.url, "GET", "/api/metrics");
  assert.equal(withToken.status, 200);
  assert.match(String(withToken.body), /^ztm_agent_meshes 1$/m);

  // The mapping's and the service's counters move with the traffic: one connection carries
  // 256 KiB each way through alice's mapping to bob's service and back.
  const agentMetrics = async () =>
    await (await fetch(`http://127.0.0.1:${agentMetricsPort}/metrics`)).text();
  const bobMetrics = async () => String((await api(bob.url, "GET", "/api/metrics")).body);
  const port = `mesh="test",port="tcp/127.0.0.1:${mapped}"`;
  const service = `mesh="test",service="tcp/echo"`;
  const before = {
    sent: sample(agentText, `ztm_agent_port_bytes_total{${port},direction="sent"}`)!,
    received: sample(agentText, `ztm_agent_port_bytes_total{${port},direction="received"}`)!,
    ok: sample(agentText, `ztm_agent_port_connections_total{${port},outcome="ok"}`)!,
  };
  assert.ok(before.sent >= 1024 && before.received >= 1024, JSON.stringify(before));
  assert.ok(before.ok >= 1, JSON.stringify(before));
  const bobBefore = await bobMetrics();
  const served = {
    sent: sample(bobBefore, `ztm_agent_service_bytes_total{${service},direction="sent"}`)!,
    ok: sample(bobBefore, `ztm_agent_service_connections_total{${service},outcome="ok"}`)!,
  };
  assert.ok(served.sent >= 1024 && served.ok >= 1, JSON.stringify(served));
  const SENT = 256 * 1024;
  const conn = await openConnection(mapped);
  const data = randomBytes(SENT);
  assert.ok(equalBytes(await conn.exchange(data), data));
  const during = await agentMetrics();
  assert.equal(sample(during, `ztm_agent_port_connections_open{${port}}`), 1);
  assertPromtoolClean(await promtool(during));
  conn.close();
  const after = await eventually(
    async () => {
      const text = await agentMetrics();
      return sample(text, `ztm_agent_port_connections_open{${port}}`) === 0 ? text : undefined;
    },
    15_000,
    "the connection counted closed",
  );
  const moved = (series: string, from: number) => sample(after, series)! - from;
  assert.ok(
    moved(`ztm_agent_port_bytes_total{${port},direction="sent"}`, before.sent) >= SENT,
    after,
  );
  assert.ok(
    moved(`ztm_agent_port_bytes_total{${port},direction="received"}`, before.received) >= SENT,
  );
  assert.ok(moved(`ztm_agent_port_connections_total{${port},outcome="ok"}`, before.ok) >= 1);
  const bobAfter = await eventually(
    async () => {
      const text = await bobMetrics();
      return sample(text, `ztm_agent_service_connections_open{${service}}`) === 0
        ? text
        : undefined;
    },
    15_000,
    "bob's tunnel counted closed",
  );
  assertPromtoolClean(await promtool(bobAfter));
  for (const direction of ["sent", "received"]) {
    const series = `ztm_agent_service_bytes_total{${service},direction="${direction}"}`;
    assert.ok(sample(bobAfter, series)! - sample(bobBefore, series)! >= SENT, bobAfter);
  }
  assert.ok(
    sample(bobAfter, `ztm_agent_service_connections_total{${service},outcome="ok"}`)! >=
      served.ok + 1,
  );

  // The hub counted the pairing and relayed at least those bytes (TLS records, both ways).
  const hubAfter = await (await fetch(`http://127.0.0.1:${hubMetricsPort}/metrics`)).text();
  assertPromtoolClean(await promtool(hubAfter));
  assert.ok(sample(hubAfter, 'ztm_hub_tunnels_opened_total{outcome="ok"}')! >= 1, hubAfter);
  assert.ok(sample(hubAfter, "ztm_hub_relayed_bytes_total")! >= 2 * SENT, hubAfter);
  // The agent times its hub's PING answers (one every PING interval).
  await eventually(
    async () => {
      const text = await (await fetch(`http://127.0.0.1:${agentMetricsPort}/metrics`)).text();
      const labels = `{mesh="test",hub="localhost:${hub.port}"}`;
      // A real round trip takes time: a sum of 0 would be an untimed PING.
      return (sample(text, `ztm_agent_hub_ping_rtt_seconds_count${labels}`) ?? 0) >= 1 &&
        (sample(text, `ztm_agent_hub_ping_rtt_seconds_sum${labels}`) ?? 0) > 0;
    },
    30_000,
    "a PING round trip observed",
  );

  // A real Prometheus scrapes both every second.
  const dir = await h.tempDir("ztm-prom-");
  await Deno.writeTextFile(
    join(dir, "prometheus.yml"),
    [
      "global: { scrape_interval: 1s, evaluation_interval: 1s }",
      "scrape_configs:",
      `  - job_name: hub`,
      `    static_configs: [{ targets: ["127.0.0.1:${hubMetricsPort}"] }]`,
      `  - job_name: agent`,
      `    static_configs: [{ targets: ["127.0.0.1:${agentMetricsPort}"] }]`,
      "",
    ].join("\n"),
  );
  const checked = await new Deno.Command("promtool", {
    args: ["check", "config", join(dir, "prometheus.yml")],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(checked.code, 0, new TextDecoder().decode(checked.stderr));
  const prom = h.spawnProgram("prometheus", "prometheus", [
    `--config.file=${join(dir, "prometheus.yml")}`,
    `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
  ]);
  const promUrl = `http://127.0.0.1:${promPort}`;
  await eventually(
    async () => (await query(promUrl, 'up{job="hub"}')) === 1,
    30_000,
    "hub scraped",
  );
  await eventually(
    async () => (await query(promUrl, 'up{job="agent"}')) === 1,
    30_000,
    "agent scraped",
  );
  assert.equal(await query(promUrl, "ztm_hub_sessions"), 2);
  assert.equal(await query(promUrl, "ztm_hub_endpoints_online"), 2);
  assert.ok((await query(promUrl, 'ztm_process_resident_memory_bytes{job="hub"}'))! > 0);
  // Prometheus holds the traffic counters as scraped, and sees them move with new traffic.
  const promSent = `ztm_agent_port_bytes_total{port="tcp/127.0.0.1:${mapped}",direction="sent"}`;
  const scraped = await eventually(() => query(promUrl, promSent), 30_000, "bytes scraped");
  assert.ok(scraped >= before.sent + SENT, String(scraped));
  await echoRoundTrip(mapped, SENT);
  await eventually(
    async () => ((await query(promUrl, promSent)) ?? 0) >= scraped + SENT,
    30_000,
    "scraped bytes grow",
  );

  // The figures follow the mesh: bob's certificate is revoked, the hub closes his session (one
  // revocation applied) and refuses his redials at admission; its gauges fall at the next scrape.
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const del = await fetch(`${ca.url}/api/certificates/bob`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 200, await del.text());
  await eventually(
    async () => (await query(promUrl, "ztm_hub_revocations_applied_total")) === 1,
    30_000,
    "one revocation applied",
  );
  await eventually(
    async () =>
      ((await query(promUrl, 'ztm_hub_admission_refusals_total{reason="revoked"}')) ?? 0) >= 1,
    60_000,
    "bob's redial refused",
  );
  const crlAge = await query(promUrl, "ztm_hub_crl_age_seconds");
  assert.ok(crlAge !== undefined && crlAge >= 0, String(crlAge));
  await eventually(
    async () => (await query(promUrl, "ztm_hub_sessions")) === 1,
    30_000,
    "one session",
  );
  await eventually(
    async () => (await query(promUrl, "ztm_hub_endpoints_online")) === 1,
    30_000,
    "one online",
  );
  await prom.stop();
});
