/**
 * Live state of this endpoint's port mappings and services, for the API:
 * whether each works, the last error and its time, open connections, and
 * bytes each way. The data path only reports outcomes here (a tunnel opened,
 * failed, was refused; a leg's bytes) with one call at each place; this
 * module keeps the counts and, when asked, judges a mapping against the hub's
 * list of who offers its service (nobody, nobody online, not to this user).
 *
 * "Up" is toward the service's target, "down" back toward the client: a
 * mapping reads up from its client, a provider writes up to its target.
 */
import { ZtmError } from "@ztm/shared/errors";
import { errText } from "@ztm/shared/log";
import type { MeshService } from "@ztm/shared/protocol";
import type { Leg } from "@ztm/shared/splice";
import type { PortMapping } from "./runtime.ts";
import { safeText } from "@ztm/shared/errors";
import type { TunnelError, TunnelHealth, TunnelState } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { TunnelError, TunnelHealth, TunnelState };

/** Counts and last outcome of one mapping or service. Single-threaded; calls never throw. */
export class Tally {
  open = 0;
  connections = 0;
  bytesUp = 0;
  bytesDown = 0;
  lastOk: string | null = null;
  lastError: TunnelError | null = null;
  /** Datagrams dropped on purpose (UDP); shown once `datagrams` is set. */
  dropped = 0;
  /** A UDP mapping or service: its state shows `dropped`. */
  datagrams = false;
  /**
   * Tunnels that failed or were refused, by the health word their error means
   * (a bounded set, fit for a metric label; tunnels that opened are `connections`).
   */
  readonly failures: Map<TunnelHealth, number> = new Map();

  /** Records a failed or refused tunnel (a `ZtmError` keeps its code). */
  failed(err: unknown): void {
    const code = err instanceof ZtmError ? err.code : "tunnel_failed";
    this.refused(code, errText(err));
  }

  /** Counts datagrams dropped on purpose. */
  drop(n = 1): void {
    this.datagrams = true;
    this.dropped += n;
  }

  /** Records a refusal given (or received) as status fields. */
  refused(code: string, message: string): void {
    this.lastError = { code, message, time: new Date().toISOString() };
    const health = healthOf(code);
    this.failures.set(health, (this.failures.get(health) ?? 0) + 1);
  }

  /**
   * Wraps the local leg of a tunnel that just opened: counts it open until
   * it is closed or aborted, and its bytes each way. `reads` says which way
   * the bytes read from this leg go.
   */
  track(leg: Leg, reads: "up" | "down"): Leg {
    this.open++;
    this.connections++;
    this.lastOk = new Date().toISOString();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.open--;
    };
    const add = (n: number, up: boolean) => {
      if (up) this.bytesUp += n;
      else this.bytesDown += n;
    };
    return {
      read: async () => {
        const chunk = await leg.read();
        if (chunk) add(chunk.byteLength, reads === "up");
        return chunk;
      },
      write: async (chunk) => {
        await leg.write(chunk);
        add(chunk.byteLength, reads !== "up");
      },
      closeWrite: () => leg.closeWrite(),
      abort: () => {
        end();
        leg.abort();
      },
      close: () => {
        end();
        leg.close();
      },
    };
  }

  /** The counts, with the health from the last outcome alone. */
  state(label: string): TunnelState {
    const failing = this.lastError !== null &&
      (this.lastOk === null || this.lastError.time >= this.lastOk);
    const health = failing ? healthOf(this.lastError!.code) : "ok";
    return {
      health,
      message: failing
        ? this.lastError!.message
        : this.lastOk
        ? `${label} works`
        : `${label} is ready; no connection yet`,
      lastError: this.lastError,
      lastOk: this.lastOk,
      open: this.open,
      connections: this.connections,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      ...(this.datagrams ? { dropped: this.dropped } : {}),
    };
  }
}

/** The health a tunnel error code means. */
function healthOf(code: string): TunnelHealth {
  switch (code) {
    case "access_denied":
      return "not_allowed";
    case "target_unreachable":
      return "target_refusing";
    case "unknown_service":
      return "unknown_service";
    case "no_provider_online":
      return "no_provider_online";
    default:
      return "failing";
  }
}

/** The tallies of one mesh's mappings (by `ip/proto/port`) and services (by `proto/name`). */
export class TunnelStates {
  #ports = new Map<string, Tally>();
  #services = new Map<string, Tally>();

  /** The tally of the mapping `m` (made on first use). */
  port(m: { ip: string; proto: string; port: number }): Tally {
    const key = `${m.ip}/${m.proto}/${m.port}`;
    let t = this.#ports.get(key);
    if (!t) this.#ports.set(key, t = new Tally());
    return t;
  }

  /**
   * Every mapping's tally, labelled `proto/ip:port` (`tcp/127.0.0.1:5432`,
   * `tcp/[::1]:5432`), for metrics.
   */
  *ports(): Generator<[string, Tally]> {
    for (const [key, t] of this.#ports) {
      const [ip, proto, port] = key.split("/"); // an address holds no "/"
      yield [`${proto}/${ip.includes(":") ? `[${ip}]` : ip}:${port}`, t];
    }
  }

  /** Every offered service's tally, labelled `proto/name`, for metrics. */
  *services(): Generator<[string, Tally]> {
    yield* this.#services;
  }

  /** Forgets a closed mapping (a new one on the same port starts from zero). */
  dropPort(m: { ip: string; proto: string; port: number }): void {
    this.#ports.delete(`${m.ip}/${m.proto}/${m.port}`);
  }

  /** The tally of this endpoint's service `proto/name` (made on first use). */
  service(s: { proto: string; name: string }): Tally {
    const key = `${s.proto}/${s.name}`;
    let t = this.#services.get(key);
    if (!t) this.#services.set(key, t = new Tally());
    return t;
  }

  /** Forgets the tallies of services not in `kept`. */
  keepServices(kept: { proto: string; name: string }[]): void {
    const names = new Set(kept.map((s) => `${s.proto}/${s.name}`));
    for (const key of this.#services.keys()) if (!names.has(key)) this.#services.delete(key);
  }
}

/** True when `user` may use a service of `owner` open to `users`. */
export function userMayUse(owner: string, users: string[], user: string): boolean {
  return user === owner || user === "root" || users.includes("*") || users.includes(user);
}

/**
 * The state of mapping `m` on an endpoint of `user`: first what the hub's
 * list says now (`offers`: the hub's services of that name; undefined when
 * the hub cannot be asked), then the mapping's last tunnel outcome.
 */
export function mappingState(
  m: PortMapping,
  user: string,
  offers: MeshService[] | undefined,
  tally: Tally,
): TunnelState {
  const label = `${m.proto}/${m.target.service}`;
  const state = tally.state(`Port ${m.port} → ${label}`);
  const problem = (health: TunnelHealth, message: string): TunnelState => ({
    ...state,
    health,
    message,
  });
  if (!offers) {
    return state.health === "ok"
      ? problem("failing", "The hub link is down: new connections fail until it is back")
      : state;
  }
  let groups = offers.filter((s) => s.proto === m.proto && s.name === m.target.service);
  const pinnedUser = m.target.user;
  if (pinnedUser) groups = groups.filter((g) => g.user === pinnedUser);
  if (groups.length === 0) {
    return problem(
      "unknown_service",
      pinnedUser
        ? `User "${pinnedUser}" offers no service ${label}`
        : `Nobody offers a service ${label}`,
    );
  }
  if (groups.length > 1) {
    return problem(
      "failing",
      `Several users offer ${label} (${groups.map((g) => g.user).join(", ")}); name one`,
    );
  }
  const group = groups[0];
  const pin = m.target.endpoint;
  const providers = pin
    ? group.providers.filter((p) => p.endpoint === pin || p.name === pin)
    : group.providers;
  if (providers.length === 0) {
    return problem("unknown_service", `Endpoint "${pin}" does not offer ${label}`);
  }
  const online = providers.filter((p) => p.online);
  if (online.length === 0) {
    return problem(
      "no_provider_online",
      `No provider of ${label} is online (${providers.map((p) => p.name).join(", ")} offline)`,
    );
  }
  if (!online.some((p) => userMayUse(group.user, p.users, user))) {
    return problem(
      "not_allowed",
      `User "${user}" may not use ${label} of "${group.user}"; ask them to add ${user} to its users`,
    );
  }
  return state;
}

/** A port mapping with its live state, as `GET …/ports` answers. */
export type PortMappingWithState = PortMapping & { state: TunnelState };

/**
 * Adds the live state to each of `ports` (endpoint user `user`), asking
 * `offers` once per service name in parallel; a lookup that fails counts as
 * "the hub cannot be asked".
 */
export async function withPortStates(
  ports: PortMapping[],
  user: string,
  states: TunnelStates,
  offers: (name: string) => Promise<MeshService[]>,
): Promise<PortMappingWithState[]> {
  const names = [...new Set(ports.map((p) => p.target.service))];
  const found = new Map(
    await Promise.all(names.map(async (name) => {
      try {
        return [name, await offers(name)] as const;
      } catch {
        return [name, undefined] as const;
      }
    })),
  );
  return ports.map((p) => ({
    ...p,
    state: mappingState(p, user, found.get(p.target.service), states.port(p)),
  }));
}

/** Words for an audit entry's object: a service's target and users, or a mapping's service. */
export function auditDetail(value: unknown): string {
  // What a caller sent, in the audit log: never raw control characters (`ztm log`, terminals).
  return safeText(detailOf(value));
}

function detailOf(value: unknown): string {
  if (typeof value !== "object" || value === null) return "";
  const v = value as Record<string, unknown>;
  if (typeof v.host === "string" && typeof v.port === "number") {
    const host = v.host.includes(":") ? `[${v.host}]` : v.host;
    const users = Array.isArray(v.users) ? v.users.filter((u) => typeof u === "string") : [];
    return `${host}:${v.port}` +
      (users.includes("*")
        ? ", open to every member"
        : users.length
        ? `, open to ${users.join(", ")}`
        : "");
  }
  const t = v.target as Record<string, unknown> | undefined;
  if (t && typeof t.service === "string") {
    const proto = typeof v.proto === "string" ? v.proto : "tcp";
    return `${t.service.includes("/") ? t.service : `${proto}/${t.service}`}` +
      (typeof t.user === "string" ? ` of ${t.user}` : "") +
      (typeof t.endpoint === "string" ? ` via ${t.endpoint}` : "");
  }
  return "";
}
