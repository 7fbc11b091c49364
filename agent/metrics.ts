/**
 * The agent's Prometheus metrics: `GET /api/metrics` behind the API token, or
 * `--metrics-listen` on an address of its own. Gauges read the meshes' state
 * at each scrape; counters and the ping histogram are added to where the
 * events happen.
 */
import { type Counter, type Histogram, Metrics, RTT_BUCKETS } from "@ztm/shared/metrics";
import type { MeshRuntime } from "./runtime.ts";

/** The agent's metrics and the counters its parts add to. */
export class AgentMetrics {
  readonly metrics: Metrics = new Metrics();
  #runtimes: () => Iterable<MeshRuntime> = () => [];
  /** Round trip of each PING to a hub, seconds. */
  readonly hubRtt: Histogram<"mesh" | "hub"> = this.metrics.histogram(
    "ztm_agent_hub_ping_rtt_seconds",
    "Round trip of the control session's PING to each hub",
    RTT_BUCKETS,
    ["mesh", "hub"],
  );
  /** Connections through each port mapping, by outcome. */
  readonly portConnections: Counter<"mesh" | "port" | "outcome"> = this.metrics.counter(
    "ztm_agent_port_connections_total",
    "Connections accepted by each port mapping, by outcome",
    ["mesh", "port", "outcome"],
  );
  /** Bytes through each port mapping: `sent` toward the service, `received` back. */
  readonly portBytes: Counter<"mesh" | "port" | "direction"> = this.metrics.counter(
    "ztm_agent_port_bytes_total",
    "Bytes through each port mapping (sent toward the service, received back)",
    ["mesh", "port", "direction"],
  );
  /** Tunnels to each service this endpoint offers, by outcome (`ok`, `denied`, `target_failed`). */
  readonly serviceConnections: Counter<"mesh" | "service" | "outcome"> = this.metrics.counter(
    "ztm_agent_service_connections_total",
    "Tunnels to each service this endpoint offers, by outcome",
    ["mesh", "service", "outcome"],
  );
  /** Bytes to and from each offered service's target. */
  readonly serviceBytes: Counter<"mesh" | "service" | "direction"> = this.metrics.counter(
    "ztm_agent_service_bytes_total",
    "Bytes between callers and each offered service's target (sent to the target, received from it)",
    ["mesh", "service", "direction"],
  );

  constructor() {
    this.metrics.gauge("ztm_agent_meshes", "Meshes joined and running", [], (g) => {
      g.set([...this.#runtimes()].length);
    });
    this.metrics.gauge(
      "ztm_agent_hub_connected",
      "1 while the mesh's control session with a hub is up",
      ["mesh"],
      (g) => {
        g.reset();
        for (const r of this.#runtimes()) {
          const s = r.status();
          g.set({ mesh: s.name }, s.connected ? 1 : 0);
        }
      },
    );
  }

  /** Where gauges read the meshes from (the agent's live map of runtimes). */
  watch(runtimes: () => Iterable<MeshRuntime>): void {
    this.#runtimes = runtimes;
  }
}
