/**
 * The agent's Prometheus metrics: `GET /api/metrics` behind the API token, or
 * `--metrics-listen` on an address of its own. Everything is read from the
 * meshes' state at each scrape: the port mappings' and services' counts come
 * from their tallies (`tunnel_state.ts`), which the data path already keeps
 * for the API, so the hot path adds nothing for metrics. The PING histogram
 * is the one figure added where the event happens ({@link hubPingAnswered}).
 *
 * A mapping that is closed takes its series with it; one opened again on the
 * same port starts from zero (a counter reset, which Prometheus' `rate`
 * handles).
 */
import {
  type Counter,
  type Gauge,
  type Histogram,
  Metrics,
  RTT_BUCKETS,
} from "@ztm/shared/metrics";
import type { MeshConfig, MeshRuntime } from "./runtime.ts";
import type { Tally } from "./tunnel_state.ts";

/** Which agent's metrics each mesh's PINGs go to, by the mesh's config object. */
const byMesh = new WeakMap<object, AgentMetrics>();

/**
 * Records the round trip of a PING the hub answered, in the histogram of the
 * agent that started the mesh of `config` (nothing if none did, as in tests
 * that run a mesh alone). `hub` is the hub's `host:port`; `ms` the round
 * trip measured by the caller (Deno 2.9.3's `session.ping` callback gives a
 * duration of 0). Never throws.
 *
 * @example
 * ```ts
 * const sent = performance.now();
 * session.ping((err) => {
 *   if (!err) hubPingAnswered(config, address, performance.now() - sent);
 * });
 * ```
 */
export function hubPingAnswered(config: object, hub: string | null, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) return;
  const metrics = byMesh.get(config);
  if (!metrics) return;
  const name = (config as Partial<MeshConfig>).name ?? "";
  metrics.hubRtt.observe({ mesh: name, hub: hub ?? "" }, ms / 1000);
}

/** The agent's metrics. */
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
  /** Connections through each port mapping, by outcome (`ok`, or the health word of a failure). */
  readonly portConnections: Counter<"mesh" | "port" | "outcome">;
  /** Bytes through each port mapping: `sent` toward the service, `received` back. */
  readonly portBytes: Counter<"mesh" | "port" | "direction">;
  /** Connections open now through each port mapping. */
  readonly portOpen: Gauge<"mesh" | "port">;
  /** Tunnels to each service this endpoint offers, by outcome. */
  readonly serviceConnections: Counter<"mesh" | "service" | "outcome">;
  /** Bytes to and from each offered service's target. */
  readonly serviceBytes: Counter<"mesh" | "service" | "direction">;
  /** Tunnels open now to each offered service. */
  readonly serviceOpen: Gauge<"mesh" | "service">;

  constructor() {
    const m = this.metrics;
    // Counters are set from the tallies' totals at each scrape: reset, then one increment each.
    this.portConnections = m.counter(
      "ztm_agent_port_connections_total",
      "Connections accepted by each port mapping, by outcome (each failed tunnel try counts)",
      ["mesh", "port", "outcome"],
      (c) => {
        c.reset();
        this.#tallies("port", (l, t) => {
          for (const [outcome, n] of outcomes(t)) c.inc({ ...l, outcome }, n);
        });
      },
    );
    this.portBytes = m.counter(
      "ztm_agent_port_bytes_total",
      "Bytes through each port mapping (sent toward the service, received back)",
      ["mesh", "port", "direction"],
      (c) => {
        c.reset();
        this.#tallies("port", (l, t) => {
          c.inc({ ...l, direction: "sent" }, t.bytesUp);
          c.inc({ ...l, direction: "received" }, t.bytesDown);
        });
      },
    );
    this.portOpen = m.gauge(
      "ztm_agent_port_connections_open",
      "Connections open now through each port mapping",
      ["mesh", "port"],
      (g) => {
        g.reset();
        this.#tallies("port", (l, t) => g.set(l, t.open));
      },
    );
    this.serviceConnections = m.counter(
      "ztm_agent_service_connections_total",
      "Tunnels to each service this endpoint offers, by outcome",
      ["mesh", "service", "outcome"],
      (c) => {
        c.reset();
        this.#tallies("service", (l, t) => {
          for (const [outcome, n] of outcomes(t)) c.inc({ ...l, outcome }, n);
        });
      },
    );
    this.serviceBytes = m.counter(
      "ztm_agent_service_bytes_total",
      "Bytes between callers and each offered service's target (sent to the target, received from it)",
      ["mesh", "service", "direction"],
      (c) => {
        c.reset();
        this.#tallies("service", (l, t) => {
          c.inc({ ...l, direction: "sent" }, t.bytesUp);
          c.inc({ ...l, direction: "received" }, t.bytesDown);
        });
      },
    );
    this.serviceOpen = m.gauge(
      "ztm_agent_service_connections_open",
      "Tunnels open now to each service this endpoint offers",
      ["mesh", "service"],
      (g) => {
        g.reset();
        this.#tallies("service", (l, t) => g.set(l, t.open));
      },
    );
    m.gauge("ztm_agent_meshes", "Meshes joined and running", [], (g) => {
      g.set([...this.#runtimes()].length);
    });
    m.gauge(
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

  /** Where the metrics read the meshes from (the agent's live map of runtimes). */
  watch(runtimes: () => Iterable<MeshRuntime>): void {
    this.#runtimes = runtimes;
  }

  /** Sends the PINGs of the mesh started with `config` to this agent's histogram. */
  adopt(config: MeshConfig): void {
    byMesh.set(config, this);
  }

  /** Calls `fn` with the labels and tally of every mapping (`port`) or offered service. */
  #tallies<K extends "port" | "service">(
    kind: K,
    fn: (labels: Record<"mesh" | K, string>, t: Tally) => void,
  ): void {
    for (const r of this.#runtimes()) {
      const states = r.tunnelStates();
      for (const [label, t] of kind === "port" ? states.ports() : states.services()) {
        fn({ mesh: r.name, [kind]: label } as Record<"mesh" | K, string>, t);
      }
    }
  }
}

/** Tunnels of a tally by outcome: `ok`, then each failure's health word. */
function outcomes(t: Tally): [string, number][] {
  return [["ok", t.connections], ...t.failures];
}
