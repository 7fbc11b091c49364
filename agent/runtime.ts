/**
 * The seam between the agent's local API (decides, stores) and its mesh
 * runtime (hub link, port listeners, provider side of tunnels).
 *
 * The API validates a request, commits the change to the store, then hands
 * the runtime plain data: the whole service list, or one port mapping to open
 * or close. The runtime never writes the store or calls back into the API;
 * it only reports a port mapping's pool user fixed at first use through the
 * callback it was started with, which the agent stores.
 */
import type { ExitRule } from "./proxy/exit_policy.ts";
import type { EndpointRecord, MeshService, Page } from "@ztm/shared/protocol";
import type { SignedRequest } from "@ztm/shared/signed_request";
import type { ProxyTunnels } from "./proxy/mesh_dialer.ts";
import type { TunnelStates } from "./tunnel_state.ts";
import type { HubState, LocalService, PortMapping, RenewalState } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { LocalService, PortMapping, RenewalState };

/** A joined mesh as stored. */
export interface MeshConfig {
  name: string;
  /** Mesh CA certificate, PEM. */
  ca: string;
  /** This agent's user certificate and key, PEM. */
  certificate: string;
  privateKey: string;
  /** Hub addresses, `host:port`, tried in order. */
  bootstraps: string[];
  endpointId: string;
  /** What `endpointId` is derived from with the certificate's key (`@ztm/shared/endpoint_id`). */
  endpointSeed: string;
  endpointName: string;
}

/** What the API shows about a mesh's hub link. */
export interface MeshStatus {
  name: string;
  endpoint: { id: string; name: string };
  user: string;
  connected: boolean;
  /** The hub address currently (or last) used. */
  hub: string | null;
  lastError: string | null;
  /** ISO time of the last change of `connected`. */
  since: string;
  /** Why the last CRL seen was refused (it did not verify); null while all is well. */
  crlAlarm?: string | null;
  /** Each hub of the mesh (`hubs.ts`); `connected` above is any of them. */
  hubs?: HubState[];
}

/** Paging and search for hub queries. */
export interface PageQuery {
  offset: number;
  limit: number;
  q?: string;
}

/**
 * One running mesh. Methods may be called concurrently; none after `close()`.
 * Hub queries throw `ServiceUnavailable` while the link is down and pass on
 * the hub's `NotFound` and other errors.
 */
export interface MeshRuntime {
  readonly name: string;
  status(): MeshStatus;
  /**
   * Waits for the first hub session: null once connected, else each failed
   * dial's hub and reason once every hub address failed (or `timeoutMs` passed).
   */
  firstSession?(timeoutMs: number): Promise<{ hub: string; why: string }[] | null>;
  endpoints(query: PageQuery): Promise<Page<EndpointRecord>>;
  /** One endpoint by id or unique name; `NotFound` or `Conflict` (ambiguous name). */
  endpoint(idOrName: string): Promise<EndpointRecord>;
  services(query: PageQuery): Promise<Page<MeshService>>;
  /** Replaces this endpoint's services (published to the hub, used for tunnel targets and access). */
  setServices(services: LocalService[]): void;
  /** Binds the mapping's listener. Throws `Conflict` (`port_in_use`) if the address is taken. */
  openPort(mapping: PortMapping): Promise<void>;
  /** Closes the mapping's listener and its live connections. */
  closePort(mapping: PortMapping): Promise<void>;
  /** Live counts and last outcomes of the mappings' and services' tunnels. */
  tunnelStates(): TunnelStates;
  /** The data path for the mesh's proxy (`agent/proxy`); absent in runtimes without one. */
  proxyTunnels?(): ProxyTunnels;
  /** Sends a signed management request to another endpoint; resolves with its status and body. */
  manage(targetId: string, request: SignedRequest): Promise<{ status: number; body: string }>;
  /** Serials on the newest CA-signed CRL seen from the hub (verified). */
  revoked(): Set<string>;
  /** Sets who answers management requests that other endpoints send here. */
  setManageHandler(handler: ManageHandler): void;
  /** Leaves the hub, closes every listener. */
  close(): Promise<void>;
  /** Sets (or, with null, removes) this endpoint's exit; throws `BadRequest` for bad rules. */
  setExit?(rules: ExitRule[] | null): void;
  /** Puts a renewed certificate (same key) to use for end-to-end pairs. */
  certificateRenewed?(certPem: string): void;
  /** A request to the hub on the current session, answered with its raw status and body. */
  hubRequest?(
    method: string,
    path: string,
    body?: string,
  ): Promise<{ status: number; body: string }>;
  /** Where the certificate's renewal stands (`renew.ts`). */
  renewal?(): RenewalState;
}

/** Answers a management request another endpoint sent through the hub (it verifies the signature). */
export type ManageHandler = (
  request: unknown,
  from: { endpoint: string; user: string },
) => Promise<{ status: number; body: string }>;

/** Starts the runtime of a mesh with its stored services and mappings. */
export type StartMesh = (
  config: MeshConfig,
  state: { services: LocalService[]; ports: PortMapping[]; exit?: ExitRule[] | null },
) => Promise<MeshRuntime>;
