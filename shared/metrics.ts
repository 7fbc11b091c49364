/**
 * Prometheus metrics for every component, on `prom-client` (the reference
 * client for JavaScript; its text exposition passes `promtool check metrics`).
 *
 * A component makes one `Metrics`, declares its counters, gauges and
 * histograms on it (names start `ztm_`, units in the name: `_seconds`,
 * `_bytes`, `_total`), and serves `GET /metrics` with `serveMetrics` on its
 * own listen address, or answers it from a route of its own API. Gauges read
 * the component's state when scraped (`collect`), so the hot paths only add
 * to counters. Process figures (RSS, CPU, descriptors, event-loop lag, GC)
 * come with every registry.
 *
 * @example
 * ```ts
 * const metrics = new Metrics();
 * const opened = metrics.counter("ztm_hub_tunnels_opened_total", "Tunnels opened", ["outcome"]);
 * opened.inc({ outcome: "ok" });
 * serveMetrics({ hostname: "127.0.0.1", port: 9101 }, metrics, log);
 * ```
 */
import client from "prom-client";
import { formatHostPort, type HostPort } from "./flags.ts";
import type { Logger } from "./log.ts";

export type Counter<L extends string = string> = client.Counter<L>;
export type Gauge<L extends string = string> = client.Gauge<L>;
export type Histogram<L extends string = string> = client.Histogram<L>;

/** Round-trip buckets, seconds: loopback (0.1 ms) to a slow intercontinental link (5 s). */
export const RTT_BUCKETS = [
  0.0001,
  0.0005,
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];

/** One registry with the process figures; metrics are declared on it once. */
export class Metrics {
  readonly registry: client.Registry = new client.Registry();

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: "ztm_" });
    // Gauges that prom-client names `_total`, against Prometheus' naming rules (promtool says so);
    // the same counts stand without the suffix (`ztm_nodejs_active_handles`, …).
    for (const kind of ["handles", "requests", "resources"]) {
      this.registry.removeSingleMetric(`ztm_nodejs_active_${kind}_total`);
    }
  }

  /**
   * A counter; `labels` are the names of its labels. With `collect`, it is set
   * at each scrape from totals the component keeps anyway (reset, then one
   * `inc` per series) rather than added to on a hot path.
   */
  counter<L extends string>(
    name: string,
    help: string,
    labels: L[] = [],
    collect?: (c: Counter<L>) => void,
  ): Counter<L> {
    return new client.Counter(this.#options(name, help, labels, collect));
  }

  /** A gauge; `collect` sets it from the component's state at each scrape. */
  gauge<L extends string>(
    name: string,
    help: string,
    labels: L[] = [],
    collect?: (g: Gauge<L>) => void,
  ): Gauge<L> {
    return new client.Gauge(this.#options(name, help, labels, collect));
  }

  /** What a counter and a gauge are made from: `collect`, if any, runs with the metric at each scrape. */
  #options<M, L extends string>(
    name: string,
    help: string,
    labels: L[],
    collect?: (metric: M) => void,
  ) {
    return {
      name,
      help,
      labelNames: labels,
      registers: [this.registry],
      ...(collect
        ? {
          collect(this: M) {
            collect(this);
          },
        }
        : {}),
    };
  }

  /** A histogram with `buckets` (upper bounds). */
  histogram<L extends string>(
    name: string,
    help: string,
    buckets: number[],
    labels: L[] = [],
  ): Histogram<L> {
    return new client.Histogram({
      name,
      help,
      buckets,
      labelNames: labels,
      registers: [this.registry],
    });
  }

  /** The text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** `GET /metrics` as a `Response`. */
  async response(): Promise<Response> {
    return new Response(await this.text(), {
      headers: { "content-type": this.registry.contentType },
    });
  }
}

/**
 * Serves `GET /metrics` of `metrics` on `addr` (no token: bind it where only
 * the scraper reaches). Other paths get 404, other methods 405.
 */
export function serveMetrics(
  addr: HostPort,
  metrics: Metrics,
  log: Logger,
): Deno.HttpServer<Deno.NetAddr> {
  const server = Deno.serve({
    hostname: addr.hostname,
    port: addr.port,
    onListen: (a) =>
      log.info("metrics listening", {
        addr: formatHostPort({ hostname: a.hostname, port: a.port }),
      }),
  }, (req) => {
    const path = new URL(req.url).pathname;
    if (path !== "/metrics") return new Response("Not found: use /metrics\n", { status: 404 });
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    return metrics.response();
  });
  return server;
}

/**
 * `component` with `GET /metrics` of `metrics` served on `addr` beside it
 * (`serveMetrics`): closing the result stops the metrics server, then the
 * component. What a component's `main.ts` hands `runUntilSignal`.
 */
export function withMetricsServer(
  component: { close(): Promise<void> },
  addr: HostPort,
  metrics: Metrics,
  log: Logger,
): { close(): Promise<void> } {
  const server = serveMetrics(addr, metrics, log);
  return {
    async close() {
      await server.shutdown();
      await component.close();
    },
  };
}
