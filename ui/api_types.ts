/**
 * The agent API's JSON as the dashboard reads it: the contract in
 * `@ztm/shared/agent_api` (the UI package may not import the agent, which
 * serves it), under the names the views use, and the props the server hands
 * the dashboard.
 */
import type {
  LocalServiceState,
  MeshSummary,
  OpenedPort,
  PortMappingState,
} from "@ztm/shared/agent_api";

export type {
  AuditEntry,
  EndpointRecord,
  HubSession,
  MadeInvite,
  MeshService,
  MeshSummary,
  Page,
  ProxyStatus,
  TunnelHealth,
  TunnelState,
} from "@ztm/shared/agent_api";

/** A service an endpoint provides (`GET …/endpoints/{ep}/services`), with its live state. */
export type LocalService = LocalServiceState;

/**
 * A port mapping of an endpoint (`GET …/endpoints/{ep}/ports`) with its live
 * state; the answer to a creation (`OpenedPort`) adds a `warning`.
 */
export type PortMapping = PortMappingState & Pick<OpenedPort, "warning">;

/** What the server hands the dashboard island when it renders the page. */
export interface DashboardProps {
  /** Absent when the page was asked for with the session cookie alone: the script loads them. */
  meshes?: MeshSummary[];
  /** Endpoint name a join uses when none is given (the host name). */
  defaultEndpointName: string;
  version: string;
}
