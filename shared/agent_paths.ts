/**
 * The paths of the agent's local API and the names of its dashboard session:
 * the part of the contract (`agent_api.ts`, which re-exports all of it) that
 * the dashboard's script needs, apart so its bundle carries these strings and
 * not the error catalogues.
 *
 * @example
 * ```ts
 * import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
 * agentPath(AGENT_PATHS.policy, { mesh: "home" }); // "/api/meshes/home/policy"
 * ```
 *
 * @module
 */
import { pathSegment } from "./path_segment.ts";

/** Every path the agent serves; `:name` is one percent-encoded segment (see `agentPath`). */
export const AGENT_PATHS = {
  /** The dashboard page (or the sign-in page without a session). */
  dashboard: "/",
  /** `?code=`: redeems a one-time login code for a dashboard session. */
  login: "/login",
  /** The dashboard's hashed script and style. */
  asset: "/assets/:name",
  /** Every joined mesh (`MeshSummary[]`). */
  meshes: "/api/meshes",
  /** One mesh: `GET` it, `POST` joins (`JoinBody` or `InviteJoinBody`), `PATCH` `{bootstraps}`, `DELETE` leaves. */
  mesh: "/api/meshes/:mesh",
  /** `POST` `InviteRequest`: a `MadeInvite` from the mesh's CA, only on the agent beside it (`ztm start`). */
  invites: "/api/meshes/:mesh/invites",
  /** This endpoint's remote management `Policy`. */
  policy: "/api/meshes/:mesh/policy",
  /** This agent's proxy for the mesh (`ProxyStatus`). */
  proxy: "/api/meshes/:mesh/proxy",
  /** This endpoint's exit rules (`{rules}`). */
  exit: "/api/meshes/:mesh/exit",
  /** The mesh's endpoints, as the hub lists them (`Page<EndpointRecord>`). */
  endpoints: "/api/meshes/:mesh/endpoints",
  /** One endpoint by id or unique name (`EndpointRecord`). */
  endpoint: "/api/meshes/:mesh/endpoints/:ep",
  /** The mesh's services with their providers (`Page<MeshService>`). */
  meshServices: "/api/meshes/:mesh/services",
  /** The agent's metrics, Prometheus text. */
  metrics: "/api/metrics",
  /** `POST`: a fresh one-time dashboard login URL (`{url}`). */
  loginCodes: "/api/login-codes",
} as const;

/** Request header carrying a dashboard session's secret, beside its cookie. */
export const SESSION_HEADER = "x-ztm-session";
/** Start of the dashboard's session cookie name (the API's port follows: `ztm_session_7777`). */
export const SESSION_COOKIE = "ztm_session";

/** Paths of one endpoint's operations, relative to `AGENT_PATHS.endpoint` (local or remote). */
export const ENDPOINT_PATHS = {
  /** The services the endpoint provides (`LocalServiceState[]`). */
  services: "services",
  /** `POST` offers or replaces (`ServiceSpec` without proto and name), `DELETE` withdraws. */
  service: "services/:proto/:name",
  /** The endpoint's port mappings (`PortMappingState[]`). */
  ports: "ports",
  /** `POST` `{target}` opens a port mapping, `DELETE` closes it. */
  port: "ports/:ip/:proto/:port",
  /** The endpoint's audit log, newest first (`AuditPage`). */
  log: "log",
} as const;

/**
 * `pattern` with each `:name` replaced by `params[name]` (a string or a
 * number), percent-encoded. Throws `TypeError` when a parameter is missing.
 *
 * @example
 * ```ts
 * agentPath(AGENT_PATHS.endpoint, { mesh: "home", ep: "laptop 2" }); // "/api/meshes/home/endpoints/laptop%202"
 * ```
 */
export function agentPath(pattern: string, params: object = {}): string {
  const values = params as Record<string, unknown>;
  return pattern.split("/").map((segment) => {
    if (!segment.startsWith(":")) return segment;
    const value = values[segment.slice(1)];
    if (typeof value !== "string" && typeof value !== "number") {
      throw new TypeError(`No value for ${segment} in ${pattern}`);
    }
    return pathSegment(String(value));
  }).join("/");
}

/**
 * `…/endpoints/{ep}/` followed by one of `ENDPOINT_PATHS`, its parameters
 * filled from `params` (see `agentPath`). Throws `TypeError` when a parameter is missing.
 *
 * @example
 * ```ts
 * endpointPath("home", "laptop", ENDPOINT_PATHS.service, { proto: "tcp", name: "ssh" });
 * // "/api/meshes/home/endpoints/laptop/services/tcp/ssh"
 * ```
 */
export function endpointPath(
  mesh: string,
  ep: string,
  pattern: string,
  params: object = {},
): string {
  return agentPath(`${AGENT_PATHS.endpoint}/${pattern}`, { ...params, mesh, ep });
}
