/**
 * A typed client of the agent's local REST API, for Deno scripts and the
 * `ztm` command line: one method per route, results typed as the API returns
 * them, and every refusal thrown as the shared error class of its status
 * (`NotFound`, `Conflict`, `Forbidden`, …) with the API's code and message.
 *
 * It only speaks HTTP to an agent; it starts nothing and keeps no state but
 * the agent's address and API token.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@ztm/agent/client";
 * const agent = AgentClient.withTokenFile("127.0.0.1:7777", `${Deno.env.get("HOME")}/ztm.db.token`);
 * for (const mesh of await agent.meshes()) console.log(mesh.name, mesh.status?.connected);
 * ```
 *
 * @module
 */
import {
  AGENT_PATHS as P,
  agentError,
  agentPath,
  type AuditEntry,
  type AuditPage,
  ENDPOINT_PATHS as E,
  endpointPath,
  type EndpointRecord,
  type ExitRule,
  type InviteJoinBody,
  type JoinBody,
  type ListQuery,
  type LocalService,
  type LocalServiceState,
  type MeshService,
  type MeshSummary,
  type OpenedPort,
  type Page,
  type Policy,
  type PortAddress,
  type PortMapping,
  type PortMappingState,
  type ProxyStatus,
  type ServiceProto,
  type ServiceSpec,
  type TunnelHealth,
  type TunnelState,
  type UnverifiedRefusals,
} from "@ztm/shared/agent_api";
import { errorFromResponse } from "@ztm/shared/errors";

// The contract's types, so a script needs only this module.
export type { AuditEntry, AuditPage, EndpointRecord, ExitRule, InviteJoinBody, JoinBody };
export type { ListQuery, LocalService, LocalServiceState, MeshService, MeshSummary, OpenedPort };
export type { Page, Policy, PortAddress, PortMapping, PortMappingState, ProxyStatus };
export type { ServiceProto, ServiceSpec, TunnelHealth, TunnelState, UnverifiedRefusals };

/** How to reach an agent. */
export interface AgentClientOptions {
  /** The agent's API: `http://host:port` or `host:port`. */
  url: string;
  /** The agent's API token (the text of its token file). */
  token: string;
  /** How long one request may take, ms (default 60 s; remote management takes up to 15 s). */
  timeoutMs?: number;
}

function waitQuery(wait: number | undefined): string {
  return wait ? `?wait=${wait}` : "";
}

/** Default deadline of one request. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * A client of one agent's API. Methods may be called concurrently. Each
 * throws a `ZtmError` subclass for an error answer, `ServiceUnavailable`
 * (`agent_unreachable`) when the agent cannot be reached, and `GatewayTimeout`
 * (`agent_timeout`) when it does not answer within `timeoutMs`.
 */
export class AgentClient {
  /** `http://host:port` of the agent's API. */
  readonly url: string;
  #token: string;
  #timeoutMs: number;

  constructor(opts: AgentClientOptions) {
    this.url = (/^https?:\/\//.test(opts.url) ? opts.url : `http://${opts.url}`).replace(
      /\/+$/,
      "",
    );
    this.#token = opts.token.trim();
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** A client whose token is read from `tokenFile` (the agent's `<database>.token`). */
  static withTokenFile(url: string, tokenFile: string): AgentClient {
    return new AgentClient({ url, token: Deno.readTextFileSync(tokenFile) });
  }

  /**
   * Calls `method path` (path starting `/api/`) and returns the parsed JSON
   * answer. The typed methods below are built on it.
   */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      text = await res.text();
    } catch (err) {
      if (signal.aborted) {
        throw agentError(
          "agent_timeout",
          `The agent at ${this.url} did not answer ${method} ${path} within ${this.#timeoutMs} ms`,
          { cause: err },
        );
      }
      throw agentError(
        "agent_unreachable",
        `Cannot reach the agent at ${this.url}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!res.ok) throw errorFromResponse(res.status, text);
    return JSON.parse(text) as T;
  }

  /** `GET /api/meshes`: every joined mesh with its hub link. */
  meshes(): Promise<MeshSummary[]> {
    return this.request("GET", P.meshes);
  }

  /** `GET /api/meshes/{mesh}`. */
  mesh(mesh: string): Promise<MeshSummary> {
    return this.request("GET", agentPath(P.mesh, { mesh }));
  }

  /**
   * `POST /api/meshes/{mesh}`: joins; the agent checks the three PEMs fit together first.
   * With `wait` (seconds) it also waits for the first hub session, and a hub it cannot
   * reach undoes the join (`ServiceUnavailable`, `hub_unreachable`, the reason in words).
   */
  join(mesh: string, body: JoinBody, options: { wait?: number } = {}): Promise<MeshSummary> {
    return this.request("POST", agentPath(P.mesh, { mesh }) + waitQuery(options.wait), body);
  }

  /**
   * `POST /api/meshes/{mesh}` with an invite: the agent makes its key, enrolls through the
   * invite's hub and joins; `wait` as in {@link join}.
   */
  joinWithInvite(
    mesh: string,
    body: InviteJoinBody,
    options: { wait?: number } = {},
  ): Promise<MeshSummary> {
    return this.request("POST", agentPath(P.mesh, { mesh }) + waitQuery(options.wait), body);
  }

  /** `PATCH /api/meshes/{mesh}`: new hub addresses, used at once; `wait` as in {@link join}. */
  setHubs(
    mesh: string,
    bootstraps: string[],
    options: { wait?: number } = {},
  ): Promise<MeshSummary> {
    return this.request("PATCH", agentPath(P.mesh, { mesh }) + waitQuery(options.wait), {
      bootstraps,
    });
  }

  /** `DELETE /api/meshes/{mesh}`: leaves and forgets the mesh. */
  leave(mesh: string): Promise<MeshSummary> {
    return this.request("DELETE", agentPath(P.mesh, { mesh }));
  }

  /** `GET /api/meshes/{mesh}/policy`: this endpoint's policy for remote management. */
  policy(mesh: string): Promise<Policy> {
    return this.request("GET", agentPath(P.policy, { mesh }));
  }

  /** `PUT /api/meshes/{mesh}/policy`: fields not given keep their value. */
  setPolicy(mesh: string, policy: Partial<Policy>): Promise<Policy> {
    return this.request("PUT", agentPath(P.policy, { mesh }), policy);
  }

  /** `GET /api/meshes/{mesh}/proxy`: this agent's proxy for the mesh (off, or where it listens). */
  proxy(mesh: string): Promise<ProxyStatus> {
    return this.request("GET", agentPath(P.proxy, { mesh }));
  }

  /**
   * `PUT /api/meshes/{mesh}/proxy`: turns the proxy on (or moves it) at
   * `listen`, a loopback `host:port` (default `127.0.0.1:1080`). Throws
   * `Conflict` (`port_in_use`) or `BadRequest` (`listen_not_loopback`).
   */
  proxyOn(mesh: string, listen?: string, exit?: string): Promise<ProxyStatus> {
    return this.request("PUT", agentPath(P.proxy, { mesh }), {
      ...(listen ? { listen } : {}),
      ...(exit ? { exit } : {}),
    });
  }

  /** `DELETE /api/meshes/{mesh}/proxy`: turns the proxy off and closes its connections. */
  proxyOff(mesh: string): Promise<ProxyStatus> {
    return this.request("DELETE", agentPath(P.proxy, { mesh }));
  }

  /** `GET /api/meshes/{mesh}/endpoints`: the mesh's endpoints with their online state. */
  endpoints(mesh: string, query: ListQuery = {}): Promise<Page<EndpointRecord>> {
    return this.request("GET", agentPath(P.endpoints, { mesh }) + search(query));
  }

  /** `GET /api/meshes/{mesh}/endpoints/{ep}`: one endpoint by id or unique name. */
  endpoint(mesh: string, ep: string): Promise<EndpointRecord> {
    return this.request("GET", agentPath(P.endpoint, { mesh, ep }));
  }

  /** `GET /api/meshes/{mesh}/services`: mesh-wide services with their providers. */
  meshServices(mesh: string, query: ListQuery = {}): Promise<Page<MeshService>> {
    return this.request("GET", agentPath(P.meshServices, { mesh }) + search(query));
  }

  /** `GET …/endpoints/{ep}/services`: the services an endpoint provides (any endpoint). */
  services(mesh: string, ep: string): Promise<LocalServiceState[]> {
    return this.request("GET", endpointPath(mesh, ep, E.services));
  }

  /** `POST …/endpoints/{ep}/services/{proto}/{name}`: offers (or replaces) a service. */
  createService(mesh: string, ep: string, service: ServiceSpec): Promise<LocalService> {
    const { proto, name, ...body } = service;
    return this.request(
      "POST",
      endpointPath(mesh, ep, E.service, { proto, name }),
      body,
    );
  }

  /** `DELETE …/endpoints/{ep}/services/{proto}/{name}`. */
  deleteService(
    mesh: string,
    ep: string,
    service: { proto: ServiceProto; name: string },
  ): Promise<LocalService> {
    return this.request(
      "DELETE",
      endpointPath(mesh, ep, E.service, service),
    );
  }

  /** `GET …/endpoints/{ep}/ports`: an endpoint's port mappings with their live state. */
  ports(mesh: string, ep: string): Promise<PortMappingState[]> {
    return this.request("GET", endpointPath(mesh, ep, E.ports));
  }

  /** `POST …/endpoints/{ep}/ports/{ip}/{proto}/{port}`: opens a port mapping to a service. */
  openPort(
    mesh: string,
    ep: string,
    address: PortAddress,
    target: PortMapping["target"],
  ): Promise<OpenedPort> {
    return this.request("POST", endpointPath(mesh, ep, E.port, address), { target });
  }

  /** `DELETE …/endpoints/{ep}/ports/{ip}/{proto}/{port}`: closes a port mapping. */
  closePort(mesh: string, ep: string, address: PortAddress): Promise<PortMapping> {
    return this.request("DELETE", endpointPath(mesh, ep, E.port, address));
  }

  /** `GET …/endpoints/{ep}/log`: the endpoint's audit log, newest first. */
  auditLog(mesh: string, ep: string, query: ListQuery = {}): Promise<AuditPage> {
    return this.request("GET", endpointPath(mesh, ep, E.log) + search(query));
  }

  /** `POST /api/login-codes`: a fresh one-time dashboard login URL. */
  async loginUrl(): Promise<string> {
    return (await this.request<{ url: string }>("POST", P.loginCodes)).url;
  }
}

function search(query: ListQuery): string {
  const params = new URLSearchParams();
  if (query.offset !== undefined) params.set("offset", String(query.offset));
  if (query.limit !== undefined) params.set("limit", String(query.limit));
  if (query.q) params.set("q", query.q);
  const text = params.toString();
  return text ? `?${text}` : "";
}
