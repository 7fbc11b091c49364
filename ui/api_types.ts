/**
 * The agent API's JSON as the dashboard reads it. Hub-side shapes come from
 * the wire contract; the agent-side ones are restated here because the UI
 * package must not import the agent (the agent serves the UI).
 */
export type { EndpointRecord, MeshService, Page } from "@ztm/shared/protocol";

/** `GET /api/meshes` row. */
export interface MeshSummary {
  name: string;
  endpoint: { id: string; name: string };
  user: string;
  bootstraps: string[];
  joinedAt: string;
  certificate: {
    serial: string;
    notAfter: string;
    /** Where the certificate's renewal stands (absent while the mesh is not running). */
    renewal?: {
      renewAt: string;
      renewals: number;
      lastRenewedAt: string | null;
      lastError: string | null;
      warning: string | null;
    };
  };
  /** True when this agent runs the mesh's CA (`ztm start`) and can make invites. */
  canInvite?: boolean;
  /** The mesh CA certificate's end; `warning` in words when under a year is left. */
  caCertificate?: { notAfter: string; daysLeft: number; warning: string | null };
  /** Null while the mesh is joined but not running. */
  status: {
    connected: boolean;
    hub: string | null;
    lastError: string | null;
    since: string;
    /** Each hub's session (one per hub address); `connected` above is any of them. */
    hubs?: HubSession[];
  } | null;
}

/** `POST /api/meshes/{mesh}/invites`: an invite the mesh's CA made (shown once). */
export interface MadeInvite {
  invite: string;
  id: string;
  user: string;
  expiresAt: string;
  usesLeft: number;
  hubs: { control: string[]; enroll: string[] };
}

/** One hub session of a mesh (`status.hubs[]`). */
export interface HubSession {
  address: string;
  connected: boolean;
  lastError: string | null;
  /** Round trip of the last PING, ms; null before the first. */
  rttMs: number | null;
  /** ISO time the session last went up or down. */
  since: string;
  /** While down with an error: what it almost always means, in words. */
  problem?: string;
}

/** How a port mapping or service is doing (`state.health`). */
export type TunnelHealth =
  | "ok"
  | "unknown_service"
  | "no_provider_online"
  | "not_allowed"
  | "target_refusing"
  | "failing";

/** The live state of a port mapping or service (absent while its mesh is not running). */
export interface TunnelState {
  health: TunnelHealth;
  /** The health in words. */
  message: string;
  lastError: { code: string; message: string; time: string } | null;
  lastOk: string | null;
  open: number;
  connections: number;
  /** Bytes toward the service's target. */
  bytesUp: number;
  /** Bytes back toward the client. */
  bytesDown: number;
}

/** A service an endpoint provides (`GET …/endpoints/{ep}/services`). */
export interface LocalService {
  proto: string;
  name: string;
  host: string;
  port: number;
  users: string[];
  state?: TunnelState;
}

/** A port mapping of an endpoint (`GET …/endpoints/{ep}/ports`). */
export interface PortMapping {
  ip: string;
  proto: string;
  port: number;
  target: { service: string; user?: string; endpoint?: string };
  state?: TunnelState;
  /** Only in the answer to a creation: why the new mapping cannot work yet. */
  warning?: string;
}

/** One audit log entry (`GET …/endpoints/{ep}/log`). */
export interface AuditEntry {
  id: number;
  time: string;
  user: string;
  via: string;
  method: string;
  path: string;
  status: number;
  outcome: string;
  /** What it acted on, in words (a service's target, a mapping's service); may be empty. */
  detail?: string;
}

/** What the server hands the dashboard island when it renders the page. */
export interface DashboardProps {
  /** Absent when the page was asked for with the session cookie alone: the script loads them. */
  meshes?: MeshSummary[];
  /** Endpoint name a join uses when none is given (the host name). */
  defaultEndpointName: string;
  version: string;
}

/** `GET /api/meshes/{mesh}/proxy`: this agent's proxy for the mesh. */
export interface ProxyStatus {
  enabled: boolean;
  listen: string | null;
  listening: boolean;
  address: string | null;
  error: string | null;
  connections: number;
  /** While it listens: its counts and last refusal. */
  state?: TunnelState;
}
