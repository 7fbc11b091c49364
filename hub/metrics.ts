/**
 * The hub's Prometheus metrics (`--metrics-listen`): what an operator graphs
 * and alerts on. Gauges are read from `HubServer.status()` at each scrape; the
 * counters are added to where the events happen.
 */
import { ZtmError } from "@ztm/shared/errors";
import { type Counter, Metrics } from "@ztm/shared/metrics";
import { AdmissionRefused } from "./admit.ts";
import type { HubStatus } from "./server.ts";

/** The hub's metrics and the counters its parts add to. */
export class HubMetrics {
  readonly metrics: Metrics = new Metrics();
  #status: () => HubStatus | undefined = () => undefined;
  /** Tunnels asked for, by outcome (`ok`, `refused`, `failed`, …). */
  readonly tunnelsOpened: Counter<"outcome"> = this.metrics.counter(
    "ztm_hub_tunnels_opened_total",
    "Tunnels asked for, by outcome",
    ["outcome"],
  );
  /** Bytes copied between the two sides of tunnels, both ways added. */
  readonly relayedBytes: Counter = this.metrics.counter(
    "ztm_hub_relayed_bytes_total",
    "Tunnel bytes the hub relayed (both directions)",
  );
  /** Connections and requests refused before a session, by reason. */
  readonly refusals: Counter<"reason"> = this.metrics.counter(
    "ztm_hub_admission_refusals_total",
    "Connections, sessions and requests refused, by reason",
    ["reason"],
  );
  /** Sessions closed because their certificate was revoked. */
  readonly revocationsApplied: Counter = this.metrics.counter(
    "ztm_hub_revocations_applied_total",
    "Sessions closed because their certificate was revoked",
  );

  constructor() {
    const m = this.metrics;
    const from =
      (pick: (s: HubStatus) => number | null | undefined) => (g: { set(v: number): void }) => {
        const s = this.#status();
        const v = s ? pick(s) : undefined;
        if (typeof v === "number") g.set(v);
      };
    m.gauge("ztm_hub_sessions", "Agent control sessions open", [], from((s) => s.sessions));
    m.gauge("ztm_hub_endpoints", "Endpoints the hub knows", [], from((s) => s.endpoints));
    m.gauge("ztm_hub_endpoints_online", "Endpoints online", [], from((s) => s.online));
    m.gauge("ztm_hub_tunnels_open", "Tunnels open now", [], from((s) => s.tunnels));
    const crl = (s: HubStatus) => s.revocations as Record<string, unknown> | undefined;
    m.gauge(
      "ztm_hub_crl_age_seconds",
      "Age of the CRL in force (since its thisUpdate)",
      [],
      from((s) => crl(s)?.crlAgeSeconds as number | null),
    );
    m.gauge(
      "ztm_hub_ca_reachable",
      "1 while the hub reaches the CA's revocation feed",
      [],
      from((s) => (crl(s)?.caReachable ? 1 : 0)),
    );
  }

  /**
   * Counts one tunnel asked for, by outcome: `ok` (both sides attached),
   * `refused` (the target said no), `no_provider` (not online), `timeout`,
   * `failed`. Keep outcomes to such a fixed list (they are label values).
   */
  tunnelOpened(outcome: string): void {
    this.tunnelsOpened.inc({ outcome });
  }

  /**
   * Counts one tunnel that did not open, by what went wrong: `offline`
   * (`endpoint_offline`), `unknown_service`, `timeout` (`open_timeout`),
   * `refused` (the provider said no: any 4xx/5xx answer it gave), else `failed`.
   */
  tunnelFailed(err: unknown): void {
    const code = err instanceof ZtmError ? err.code : "";
    const outcome = code === "endpoint_offline"
      ? "offline"
      : code === "unknown_service"
      ? "unknown_service"
      : code === "open_timeout"
      ? "timeout"
      : err instanceof ZtmError && err.status < 500 || code === "target_unreachable"
      ? "refused"
      : "failed";
    this.tunnelOpened(outcome);
  }

  /** Adds `bytes` copied between the two sides of a tunnel (either direction). */
  relayed(bytes: number): void {
    if (bytes > 0) this.relayedBytes.inc(bytes);
  }

  /**
   * Counts one connection, session or request refused before or at
   * admission; `reason` is a stable code (`per_address`, `descriptors`,
   * `certificate`, `revoked`, `hub_full`, `too_many_sessions`, …), never text
   * a peer sent.
   */
  refused(reason: string): void {
    this.refusals.inc({ reason });
  }

  /**
   * Counts a peer refused at admission (`admit` threw): `certificate` (not
   * verified, none, not a user's) or `expired`. A revoked one is not counted
   * here: the hub's revocation view counts it when admission asks (`hub/mod.ts`).
   */
  peerRefused(err: unknown): void {
    const reason = err instanceof AdmissionRefused ? err.reason : "certificate";
    if (reason !== "revoked") this.refused(reason);
  }

  /** Counts `sessions` closed because their certificate was revoked. */
  revoked(sessions: number): void {
    if (sessions > 0) this.revocationsApplied.inc(sessions);
  }

  /** Where gauges read the hub's state from (set once the hub runs). */
  watch(status: () => HubStatus): void {
    this.#status = status;
  }
}
