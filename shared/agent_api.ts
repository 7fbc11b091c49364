/**
 * The agent's local API contract: every path it serves, the JSON each route
 * takes and answers, and its error codes. The agent's server
 * (`agent/api.ts`, `agent/endpoint_ops.ts`), its typed client
 * (`agent/client.ts`), the `ztm` command line and the dashboard (`@ztm/ui`,
 * which may not import the agent) all read it from here. The paths and the
 * session names live in `agent_paths.ts`, re-exported here, so the
 * dashboard's bundle can take them alone.
 *
 * The API listens on loopback only. A request goes:
 *
 * 1. `GET /assets/<name>` (the dashboard's hashed script and style) and
 *    `GET /login?code=…` (a one-time login URL, answered with the dashboard
 *    page and a session cookie) need no credentials; `GET /` is the dashboard
 *    for a browser with a session, else a sign-in page.
 * 2. Every `/api/…` route needs the API token (`Authorization: Bearer`) or a
 *    dashboard session (its cookie and its secret header). Without them the
 *    answer is 401 `token_required`, for unknown paths too.
 * 3. `/api/meshes/{mesh}…` routes act on one joined mesh: join (`POST`), new
 *    hub addresses (`PATCH`), leave (`DELETE`), the remote management policy,
 *    the proxy, the exit, and the hub's listings of endpoints and services.
 * 4. `/api/meshes/{mesh}/endpoints/{ep}/…` followed by one of
 *    `ENDPOINT_ROUTES` acts on an endpoint's services, port mappings and audit
 *    log: here when `{ep}` is this endpoint, else as a request signed by this
 *    endpoint and relayed by the hub to `{ep}`, whose agent runs the same
 *    route under its own policy and answers with its own status.
 *
 * Errors are `{"error":{"code","message"}}` with the status of their class
 * (`shared/errors.ts`); `AGENT_ERRORS` lists the agent's codes and statuses.
 *
 * @example
 * ```ts
 * import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_api";
 * agentPath(AGENT_PATHS.policy, { mesh: "home" }); // "/api/meshes/home/policy"
 * ```
 *
 * @module
 */
import { type CodeCatalogue, type ErrorMaker, errorMaker } from "./errors.ts";
import type { CaExpiry } from "./ca_expiry.ts";
import type { ServiceProto } from "./protocol.ts";
import { ENDPOINT_PATHS } from "./agent_paths.ts";

export type { EndpointRecord, MeshService, Page, ServiceProto } from "./protocol.ts";

export {
  AGENT_PATHS,
  agentPath,
  ENDPOINT_PATHS,
  endpointPath,
  SESSION_COOKIE,
  SESSION_HEADER,
} from "./agent_paths.ts";
/** One operation on an endpoint: `write` ones are written to its audit log. */
export interface EndpointRoute {
  /** What the operation is called in the server's table of operations. */
  name: string;
  method: "GET" | "POST" | "DELETE";
  pattern: string;
  write: boolean;
}

/** Every operation on an endpoint, the same for its local user and remote callers. */
export const ENDPOINT_ROUTES = [
  { name: "listServices", method: "GET", pattern: ENDPOINT_PATHS.services, write: false },
  { name: "putService", method: "POST", pattern: ENDPOINT_PATHS.service, write: true },
  { name: "deleteService", method: "DELETE", pattern: ENDPOINT_PATHS.service, write: true },
  { name: "listPorts", method: "GET", pattern: ENDPOINT_PATHS.ports, write: false },
  { name: "openPort", method: "POST", pattern: ENDPOINT_PATHS.port, write: true },
  { name: "closePort", method: "DELETE", pattern: ENDPOINT_PATHS.port, write: true },
  { name: "readLog", method: "GET", pattern: ENDPOINT_PATHS.log, write: false },
] as const satisfies readonly EndpointRoute[];

/** The name of an operation on an endpoint. */
export type EndpointOpName = (typeof ENDPOINT_ROUTES)[number]["name"];

/** Largest request body the agent reads (413 beyond; a join body with three PEM files is ~3 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;
/** Longest `?wait=` a join or hub change may ask for, seconds. */
export const MAX_JOIN_WAIT_S = 300;
/** Page size of a listing when `limit` is not given. */
export const DEFAULT_PAGE_LIMIT = 100;
/** Largest page a listing may ask for. */
export const MAX_PAGE_LIMIT = 500;

/**
 * Every code the agent raises, with its status: in its API's answers, in the
 * answers of the endpoints it manages for others, in the refusals of tunnels
 * it dials or serves (a tunnel's `state.lastError.code`), and in the typed
 * client. The codes of `shared/` (`SHARED_ERRORS`: routing, bodies, signed
 * requests) come on top.
 */
export const AGENT_ERRORS = {
  // Access to the API (`agent/api.ts`)
  token_required: 401,
  // Meshes (`agent/api.ts`, `agent/store.ts`)
  unknown_mesh: 404,
  mesh_exists: 409,
  mesh_not_running: 503,
  bad_wait: 400,
  no_metrics: 404,
  // Any unknown field in a body
  bad_request: 400,
  // Joining (`agent/join.ts`, `agent/enroll.ts`)
  bad_mesh_name: 400,
  bad_endpoint_name: 400,
  bad_bootstraps: 400,
  bad_ca: 400,
  bad_certificate: 400,
  bad_private_key: 400,
  key_mismatch: 400,
  wrong_role: 400,
  certificate_expired: 400,
  certificate_not_yet_valid: 400,
  certificate_not_from_ca: 400,
  bad_invite: 400,
  ca_mismatch: 400,
  bad_answer: 503,
  // Invites through the agent beside the mesh's CA (`agent/invite_maker.ts`)
  invites_unavailable: 404,
  bad_user: 400,
  bad_expiry: 400,
  bad_uses: 400,
  // Hubs (`agent/hub_link.ts`, `agent/hub_response.ts`, `agent/hubs.ts`, `agent/mesh.ts`,
  // `agent/remote.ts`)
  hub_unreachable: 503,
  hub_timeout: 503,
  bad_hub_response: 503,
  stream_closed: 503,
  not_ready: 503,
  /** A hub that does not see the endpoint asked for: the next hub is tried. */
  not_here: 503,
  // Policy (`agent/policy.ts`) and remote management (`agent/endpoint_ops.ts`, `agent/remote.ts`)
  bad_policy: 400,
  remote_management_off: 403,
  not_allowed: 403,
  target_not_allowed: 403,
  listen_not_allowed: 403,
  too_many_refusals: 429,
  // Services and port mappings (`agent/api_checks.ts`, `agent/store.ts`, `agent/endpoint_ops.ts`)
  bad_proto: 400,
  bad_service_name: 400,
  bad_host: 400,
  bad_port: 400,
  bad_ip: 400,
  bad_target: 400,
  bad_users: 400,
  bad_strict: 400,
  address_unavailable: 400,
  port_not_permitted: 403,
  port_in_use: 409,
  port_mapped: 409,
  unknown_port: 404,
  unknown_service: 404,
  ambiguous_service: 409,
  // Tunnels: the caller's side (`agent/port_map.ts`, `agent/peer/dialer.ts`)
  no_provider_online: 503,
  client_gone: 503,
  no_data_port: 503,
  data_port_unreachable: 503,
  pair_failed: 503,
  peer_closed: 503,
  peer_protocol: 503,
  /** 403 when this agent refuses the peer's hello, 503 when the dialled peer is not who it should be. */
  peer_refused: [403, 503],
  protocol_mismatch: 403,
  too_many_pairs: 429,
  bad_peer_line: 400,
  peer_line_too_large: 400,
  // Tunnels: the provider's side (`agent/provider.ts`)
  access_denied: 403,
  target_unreachable: 502,
  // The proxy and exits (`agent/proxy/`)
  no_proxy: 404,
  bad_listen: 400,
  listen_not_loopback: 400,
  bad_exit: 400,
  bad_exit_rules: 400,
  bad_exit_destination: 400,
  exit_denied: 403,
  no_exit: 404,
  exit_offline: 503,
  exit_failed: 502,
  not_a_mesh_name: 404,
  tunnel_failed: 502,
  // The typed client (`agent/client.ts`), for an agent it cannot talk to
  agent_unreachable: 503,
  agent_timeout: 504,
} as const satisfies CodeCatalogue;

/** A code of the agent's own (see `SHARED_ERRORS` for the rest). */
export type AgentErrorCode = keyof typeof AGENT_ERRORS;

/** Makes the errors of `AGENT_ERRORS`. */
export const agentError: ErrorMaker<typeof AGENT_ERRORS> = errorMaker(AGENT_ERRORS);

/** A service this endpoint offers: `proto/name` → `host:port` reachable from here. */
export interface LocalService {
  proto: ServiceProto;
  name: string;
  host: string;
  port: number;
  /** Users allowed besides the service's user and `root`; `["*"]` is every member. */
  users: string[];
  /** When the rule narrows, live connections of users no longer allowed are closed too. */
  strict: boolean;
}

/** A local listener that tunnels each accepted connection to a service. */
export interface PortMapping {
  ip: string;
  proto: ServiceProto;
  port: number;
  target: { service: string; user?: string; endpoint?: string };
}

/** How a mapping or service is doing, as one word the UI and CLI show. */
export type TunnelHealth =
  | "ok"
  | "unknown_service"
  | "no_provider_online"
  | "not_allowed"
  | "target_refusing"
  | "failing";

/** A failure as the API shows it. */
export interface TunnelError {
  code: string;
  message: string;
  /** ISO time. */
  time: string;
}

/** The live state of one mapping or service (the `state` field of its API row). */
export interface TunnelState {
  health: TunnelHealth;
  /** The health in words, naming the service and what is wrong. */
  message: string;
  lastError: TunnelError | null;
  /** ISO time of the last tunnel that opened. */
  lastOk: string | null;
  /** Connections open now. */
  open: number;
  /** Connections since the agent started. */
  connections: number;
  /** Bytes toward the service's target. */
  bytesUp: number;
  /** Bytes back toward the client. */
  bytesDown: number;
  /**
   * UDP only: datagrams dropped on purpose (over the size limit, for a
   * flow that is closing, over a flow's queue or the flow cap, or
   * not from the target). `open` and `connections` count flows.
   */
  dropped?: number;
}

/** A port mapping as listed: with its live state (absent while the mesh is not running). */
export type PortMappingState = PortMapping & { state?: TunnelState };
/** A new port mapping: its state, and a warning when it cannot work yet (nobody offers the service…). */
export type OpenedPort = PortMappingState & { warning?: string };
/** A service as listed: with its live state (absent while the mesh is not running). */
export type LocalServiceState = LocalService & { state?: TunnelState };

/** Where an agent's certificate renewal stands, for the API, `ztm status` and the dashboard. */
export interface RenewalState {
  /** ISO time the certificate is (or was) due for renewal: two thirds of its lifetime. */
  renewAt: string;
  /** Renewals done since the agent started. */
  renewals: number;
  lastRenewedAt: string | null;
  /** Why the last attempt failed; null when it did not. */
  lastError: string | null;
  /** In plain words when renewal keeps failing and expiry is near; null while all is well. */
  warning: string | null;
}

/** A joined mesh as the API shows it (`GET /api/meshes/{mesh}`): no PEM, never the private key. */
export interface MeshSummary {
  name: string;
  /** This agent's endpoint in the mesh. */
  endpoint: { id: string; name: string };
  /** The user this agent acts as (its certificate's CN). */
  user: string;
  bootstraps: string[];
  /** ISO time of the join. */
  joinedAt: string;
  /** This agent's certificate: serial, ISO expiry, and where its renewal stands. */
  certificate: { serial: string; notAfter: string; renewal?: RenewalState };
  /**
   * The mesh CA certificate's end (with a bundle, the one that ends first), with a warning
   * in words when under a year is left.
   */
  caCertificate: CaExpiry;
  /** True when this agent runs the mesh's CA (`ztm start`) and so can make invites for it. */
  canInvite?: boolean;
  /** The hub link; null when the mesh is not running. */
  status:
    | {
      connected: boolean;
      hub: string | null;
      lastError: string | null;
      since: string;
      /** Why the last CRL seen was refused; absent while all is well. */
      crlAlarm?: string;
      /** Each hub's session (bootstraps, then hubs learnt from hub lists); `connected` is any. */
      hubs?: HubSession[];
    }
    | null;
}

/** One hub's session of a mesh (`agent/hubs.ts`). */
export interface HubState {
  /** The address dialled (a listed hub's first address). */
  address: string;
  /** `bootstrap`: given at join; `listed`: learnt from a hub list. */
  origin: "bootstrap" | "listed";
  connected: boolean;
  lastError: string | null;
  /** The last PING round trip, ms; null before one or when not connected. */
  rttMs: number | null;
  /** ISO time of the last change of `connected`. */
  since: string;
}

/** A hub session as the API shows it: its state and, while down with an error, that error in words. */
export type HubSession = HubState & {
  /** What `lastError` almost always means, in words (`agent/hub_errors.ts`). */
  problem?: string;
};

/** `POST /api/meshes/{mesh}/invites`: the user a new device will belong to, and the invite's terms. */
export interface InviteRequest {
  user: string;
  /** `90s`, `15m`, `1h`, `7d`; the CA's default (1 h) when absent. */
  expires?: string;
  /** 1 to 100; the CA's default (1) when absent. */
  uses?: number;
}

/** An invite the mesh's CA made, as the agent beside it answers (shown once: it is a secret). */
export interface MadeInvite {
  /** The printable invite string: a secret until it is used. */
  invite: string;
  id: string;
  user: string;
  expiresAt: string;
  usesLeft: number;
  hubs: { control: string[]; enroll: string[] };
}

/** The body of a join: the mesh CA, this endpoint's certificate and key (PEM), and hub addresses. */
export interface JoinBody {
  ca: string;
  agent: { name?: string; certificate: string; privateKey: string };
  /** `host:port` of the mesh's hubs, tried in order. */
  bootstraps: string[];
}

/** What `POST /api/meshes/{mesh}` takes to join with an invite (the agent makes the key). */
export interface InviteJoinBody {
  invite: string;
  agent?: { name?: string };
  /** Overrides the invite's hub addresses. */
  bootstraps?: string[];
}

/** The policy of one mesh on this endpoint, for remote management. */
export interface Policy {
  /** False: every remote request is refused. */
  remoteManagement: boolean;
  /** `host:port` patterns remote callers may point services at; `*` matches any part. */
  targets: string[];
  /** Listen addresses remote callers may open port mappings on; `*` is any. */
  listen: string[];
}

/** A mesh's proxy, as the API shows it. */
export interface ProxyStatus {
  /** Whether a proxy is configured (stored). */
  enabled: boolean;
  /** The stored listen address; null when off. */
  listen: string | null;
  /** Whether it listens now. */
  listening: boolean;
  /** The address it is bound to (its real port when `listen` asked for 0); null when not listening. */
  address: string | null;
  /** Why it does not listen although enabled (the port was taken at start); null otherwise. */
  error: string | null;
  /** Connections open through it now. */
  connections: number;
  /** While it listens: connections and bytes since it started, and the last refusal. */
  state?: TunnelState;
}

/** One rule of an exit's list, as configured. */
export interface ExitRule {
  /** CIDRs, addresses or domain globs. */
  destinations: string[];
  /** Ports: `80`, `8000-8100`, or `*` (the default). */
  ports?: string[];
  /** Users besides the exit's own user and `root`; `*` is every member. */
  users?: string[];
}

/** Paging and search of a list. */
export interface ListQuery {
  offset?: number;
  /** At most `MAX_PAGE_LIMIT`; the agent's default is `DEFAULT_PAGE_LIMIT`. */
  limit?: number;
  /** Search text. */
  q?: string;
}

/** A service to offer: `proto/name` → `host:port` reachable from the providing endpoint. */
export interface ServiceSpec {
  proto: ServiceProto;
  name: string;
  host: string;
  port: number;
  /** Users allowed besides the service's user and `root`; `["*"]` is every member. */
  users?: string[];
  /** Narrowing `users` also closes the live connections of users no longer allowed. */
  strict?: boolean;
}

/** A local listener address of a port mapping. */
export interface PortAddress {
  /** Listen address: an IPv4 or IPv6 literal, or `localhost`. */
  ip: string;
  proto: ServiceProto;
  port: number;
}

/** One audit log entry: who did what, when, and how it ended. */
export interface AuditEntry {
  id: number;
  time: string;
  /** The acting user (the signer for remote requests). */
  user: string;
  /** `local`, or the endpoint id a remote request came from. */
  via: string;
  method: string;
  /** What was acted on, e.g. `services/tcp/web`. */
  path: string;
  status: number;
  /** `ok`, or the refusal's message. */
  outcome: string;
  /** What it acted on, in words (`10.0.0.5:22, open to alice`, `tcp/ssh of bob`); may be empty. */
  detail: string;
}

/**
 * Refused remote requests whose signature did not verify, kept apart from the
 * audit log so a flood of them cannot push real entries out: a count since
 * the agent started, and the most recent few.
 */
export interface UnverifiedRefusals {
  count: number;
  since: string;
  recent: Omit<AuditEntry, "id">[];
}

/** A page of an endpoint's audit log, newest first. */
export interface AuditPage {
  items: AuditEntry[];
  total: number;
  offset: number;
  limit: number;
  /**
   * Refused remote requests whose signature did not verify: counted since the
   * agent started and the latest few, kept apart so they never push `items` out.
   */
  unverified: UnverifiedRefusals;
}
