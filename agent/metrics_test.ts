/**
 * The agent's metrics in process: PING round trips reach the histogram of the
 * agent that started the mesh, and each mapping's tally (tunnels by outcome,
 * bytes each way, open connections) shows as its series.
 */
import assert from "node:assert/strict";
import { ServiceUnavailable } from "@ztm/shared/errors";
import { AgentMetrics, hubPingAnswered } from "./metrics.ts";
import type { MeshConfig, MeshRuntime } from "./runtime.ts";
import { TunnelStates } from "./tunnel_state.ts";

function runtime(name: string, states: TunnelStates): MeshRuntime {
  return {
    name,
    status: () => ({ name, connected: true }),
    tunnelStates: () => states,
  } as unknown as MeshRuntime;
}

Deno.test("a hub's PING answers go to the histogram of the agent that started the mesh", async () => {
  const metrics = new AgentMetrics();
  const other = new AgentMetrics();
  const config = { name: "home" } as MeshConfig;
  metrics.adopt(config);
  hubPingAnswered(config, "hub.example.com:8888", 3);
  hubPingAnswered(config, "hub.example.com:8888", 40);
  hubPingAnswered({ name: "home" }, "hub.example.com:8888", 1); // a mesh no agent started
  hubPingAnswered(config, null, Number.NaN); // ignored
  const text = await metrics.metrics.text();
  const series = 'mesh="home",hub="hub.example.com:8888"';
  assert.match(text, new RegExp(`^ztm_agent_hub_ping_rtt_seconds_count\\{${series}\\} 2$`, "m"));
  assert.match(
    text,
    new RegExp(`^ztm_agent_hub_ping_rtt_seconds_sum\\{${series}\\} 0\\.043\\d*$`, "m"),
  );
  assert.match(
    text,
    new RegExp(`^ztm_agent_hub_ping_rtt_seconds_bucket\\{le="0.005",${series}\\} 1$`, "m"),
  );
  assert.doesNotMatch(await other.metrics.text(), /ztm_agent_hub_ping_rtt_seconds_count/);
});

Deno.test("each mapping's and service's tally shows as its series, and a closed mapping's go", async () => {
  const states = new TunnelStates();
  const metrics = new AgentMetrics();
  metrics.watch(() => [runtime("home", states)]);
  const mapping = { ip: "::1", proto: "tcp", port: 5432 };
  const tally = states.port(mapping);
  tally.failed(new ServiceUnavailable("no_provider_online", "Nobody online"));
  tally.refused("access_denied", "No");
  tally.refused("access_denied", "No");
  const leg = tally.track({
    read: () => Promise.resolve(new Uint8Array(10)),
    write: () => Promise.resolve(),
    closeWrite: () => Promise.resolve(),
    abort: () => {},
    close: () => {},
  }, "up");
  await leg.read();
  await leg.write(new Uint8Array(7));
  states.service({ proto: "tcp", name: "web" });
  const text = await metrics.metrics.text();
  const port = 'mesh="home",port="tcp/[::1]:5432"';
  for (
    const line of [
      `ztm_agent_port_connections_total{${port},outcome="ok"} 1`,
      `ztm_agent_port_connections_total{${port},outcome="no_provider_online"} 1`,
      `ztm_agent_port_connections_total{${port},outcome="not_allowed"} 2`,
      `ztm_agent_port_bytes_total{${port},direction="sent"} 10`,
      `ztm_agent_port_bytes_total{${port},direction="received"} 7`,
      `ztm_agent_port_connections_open{${port}} 1`,
      `ztm_agent_service_connections_total{mesh="home",service="tcp/web",outcome="ok"} 0`,
      `ztm_agent_service_connections_open{mesh="home",service="tcp/web"} 0`,
    ]
  ) assert.ok(text.split("\n").includes(line), `${line}\n${text}`);
  leg.close();
  states.dropPort(mapping);
  assert.doesNotMatch(await metrics.metrics.text(), /port="tcp\/\[::1\]:5432"/);
});
