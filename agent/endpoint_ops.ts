/**
 * What may be done to this endpoint's services, port mappings and audit log
 * — by its local user through the API, or by another endpoint through a
 * verified signed request. One entry point, `run`, takes the caller and a
 * path relative to the endpoint (`services/tcp/web`, `ports/127.0.0.1/tcp/80`,
 * `log`), so both ways go through the same checks.
 *
 * For remote callers it first applies the endpoint's local policy (remote
 * management on or off; the endpoint's user or `root` only; allowed targets
 * and listen addresses). Every change and every refused remote request is
 * written to the audit log with its outcome.
 *
 * A change is committed to the store, then handed to the runtime; if the
 * runtime cannot apply it, the store change is undone.
 */
import { errorBody, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { findRoute, json, type Params, parseJsonObject, parsePageParams } from "@ztm/shared/http";
import { errText, type Logger } from "@ztm/shared/log";
import {
  checkListenIp,
  checkPortBody,
  checkPortText,
  checkProto,
  checkServiceBody,
  checkServiceName,
  formatAddr,
  listenError,
} from "./api_checks.ts";
import { allowedTarget, allowsListen } from "./policy.ts";
import type { MeshRuntime, PortMapping } from "./runtime.ts";
import type { AgentStore, AuditEntry } from "./store.ts";
import { auditDetail, type TunnelState, withPortStates } from "./tunnel_state.ts";
import {
  agentError,
  DEFAULT_PAGE_LIMIT,
  ENDPOINT_ROUTES,
  type EndpointOpName,
  type EndpointRoute,
  MAX_PAGE_LIMIT,
  type UnverifiedRefusals,
} from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { UnverifiedRefusals };

/** Who asks. */
export interface Caller {
  /** The acting user: this endpoint's user for local requests, the signer for remote ones. */
  user: string;
  /** `local`, or the endpoint id a remote request came from. */
  via: string;
  remote: boolean;
}

/** Runs one task per key at a time (writes to one mesh never interleave). */
export type Serializer = <T>(key: string, task: () => Promise<T>) => Promise<T>;

/** What `EndpointOps` needs. */
export interface EndpointOpsOptions {
  store: AgentStore;
  runtimeOf: (mesh: string) => MeshRuntime;
  /** This endpoint's user in `mesh` (the CN of its certificate). */
  userOf: (mesh: string) => string;
  serialized: Serializer;
  log: Logger;
}

type Op = (
  mesh: string,
  caller: Caller,
  params: Params,
  body: string,
  query: URLSearchParams,
) => Promise<Response>;

/** Most recent refusals of unverified remote requests kept per mesh (in memory). */
export const UNVERIFIED_SAMPLES = 20;

/** The operations on this endpoint. Methods may be called concurrently. */
export class EndpointOps {
  #o: EndpointOpsOptions;
  #unverified = new Map<string, UnverifiedRefusals>();
  #started = new Date().toISOString();
  #routes: (EndpointRoute & { op: Op })[];

  constructor(opts: EndpointOpsOptions) {
    this.#o = opts;
    const ops: Record<EndpointOpName, Op> = {
      listServices: (m) => this.#listServices(m),
      putService: (m, c, p, b) => this.#putService(m, c, p, b),
      deleteService: (m, _c, p) => this.#deleteService(m, p),
      listPorts: (m) => this.#listPorts(m),
      openPort: (m, c, p, b) => this.#openPort(m, c, p, b),
      closePort: (m, _c, p) => this.#closePort(m, p),
      readLog: (m, _c, _p, _b, q) => this.#readLog(m, q),
    };
    this.#routes = ENDPOINT_ROUTES.map((route) => ({ ...route, op: ops[route.name] }));
  }

  /**
   * Runs `method path` (relative to the endpoint, query allowed) for `caller`
   * in `mesh`. Refusals come back as error responses, never thrown, so the
   * audit log sees every outcome.
   */
  async run(
    mesh: string,
    caller: Caller,
    method: string,
    path: string,
    body: string,
  ): Promise<Response> {
    const url = new URL(path, "http://endpoint/");
    const relative = url.pathname.slice(1);
    let write = method !== "GET";
    try {
      const { route, params } = findRoute(this.#routes, method, relative);
      write = route.write;
      if (caller.remote) this.#checkRemote(mesh, caller);
      const res = await route.op(mesh, caller, params, body, url.searchParams);
      if (write) {
        const answer = await res.clone().json().catch(() => undefined);
        this.#audit(mesh, caller, method, relative, res.status, "ok", auditDetail(answer));
      }
      return res;
    } catch (err) {
      const { status, body: errBody } = errorBody(err);
      if (!(err instanceof ZtmError)) {
        this.#o.log.error("request failed", { mesh, method, err: errText(err) });
      }
      if (write || caller.remote) {
        let asked: unknown;
        try {
          asked = JSON.parse(body);
        } catch { /* no detail */ }
        const detail = auditDetail(asked);
        this.#audit(mesh, caller, method, relative, status, errBody.error.message, detail);
      }
      if (caller.remote && status === 403) {
        this.#o.log.warn("remote request refused", {
          mesh,
          user: caller.user,
          endpoint: caller.via,
          path: relative,
        });
      }
      return json(errBody, status);
    }
  }

  /**
   * Counts and samples a refused remote request whose signature did not
   * verify (never written to the audit log, where a flood would push real
   * entries out). The log route shows them as `unverified`.
   */
  noteUnverified(mesh: string, entry: Omit<AuditEntry, "id" | "time">): void {
    let u = this.#unverified.get(mesh);
    if (!u) {
      u = { count: 0, since: this.#started, recent: [] };
      this.#unverified.set(mesh, u);
    }
    u.count++;
    u.recent.unshift({
      time: new Date().toISOString(),
      ...entry,
      outcome: entry.outcome.slice(0, 500),
    });
    if (u.recent.length > UNVERIFIED_SAMPLES) u.recent.pop();
  }

  #audit(
    mesh: string,
    caller: Caller,
    method: string,
    path: string,
    status: number,
    outcome: string,
    detail = "",
  ): void {
    try {
      this.#o.store.addAudit(mesh, {
        user: caller.user,
        via: caller.via,
        method,
        path,
        status,
        outcome,
        detail,
      });
    } catch (err) {
      this.#o.log.error("audit entry not written", { mesh, err: errText(err) });
    }
  }

  #checkRemote(mesh: string, caller: Caller): void {
    const policy = this.#o.store.policy(mesh);
    if (!policy.remoteManagement) {
      throw agentError(
        "remote_management_off",
        "Remote management is switched off on this endpoint",
      );
    }
    const owner = this.#o.userOf(mesh);
    if (caller.user !== owner && caller.user !== "root") {
      const endpoint = this.#o.store.mesh(mesh)?.endpointName ?? "?";
      throw agentError(
        "not_allowed",
        `User "${caller.user}" may not manage endpoint "${endpoint}"; only its user "${owner}" and root may`,
      );
    }
  }

  #listServices(mesh: string): Promise<Response> {
    const services = this.#o.store.services(mesh);
    const states = this.#statesOf(mesh);
    if (!states) return Promise.resolve(json(services));
    return Promise.resolve(json(services.map((s) => ({
      ...s,
      state: states.service(s).state(`Service ${s.proto}/${s.name}`),
    }))));
  }

  async #listPorts(mesh: string): Promise<Response> {
    return json(await this.#portsWithState(mesh, this.#o.store.ports(mesh)));
  }

  /** The mesh's tunnel tallies, or undefined while it is not running (lists still answer). */
  #statesOf(mesh: string) {
    try {
      return this.#o.runtimeOf(mesh).tunnelStates();
    } catch {
      return undefined;
    }
  }

  /** `ports` with their live state (judged against the hub's list of who offers each service). */
  async #portsWithState(
    mesh: string,
    ports: PortMapping[],
  ): Promise<(PortMapping & { state?: TunnelState })[]> {
    const states = this.#statesOf(mesh);
    if (!states) return ports;
    const runtime = this.#o.runtimeOf(mesh);
    return await withPortStates(
      ports,
      this.#o.userOf(mesh),
      states,
      async (name) => (await runtime.services({ offset: 0, limit: 500, q: name })).items,
    );
  }

  #readLog(mesh: string, query: URLSearchParams): Promise<Response> {
    const { offset, limit } = parsePageParams(query, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT);
    const unverified = this.#unverified.get(mesh) ?? { count: 0, since: this.#started, recent: [] };
    return Promise.resolve(
      json({ ...this.#o.store.audit(mesh, offset, limit), offset, limit, unverified }),
    );
  }

  #putService(mesh: string, caller: Caller, p: Params, body: string): Promise<Response> {
    const proto = checkProto(p.proto);
    checkServiceName(p.name);
    const svc = checkServiceBody(proto, p.name, parseJsonObject(body));
    if (caller.remote) {
      const policy = this.#o.store.policy(mesh);
      if (!allowedTarget(policy, svc.host, svc.port)) {
        throw agentError(
          "target_not_allowed",
          `Remote callers may not point services at ${
            formatAddr(svc.host, svc.port)
          } (policy targets: ${policy.targets.join(", ") || "none"})`,
        );
      }
    }
    const { store, serialized, log } = this.#o;
    return serialized(mesh, () => {
      const runtime = this.#o.runtimeOf(mesh);
      const created = store.putService(mesh, svc);
      runtime.setServices(store.services(mesh));
      log.info(created ? "service created" : "service replaced", {
        mesh,
        service: `${proto}/${p.name}`,
        addr: formatAddr(svc.host, svc.port),
        user: caller.user,
      });
      return Promise.resolve(json(svc, 201));
    });
  }

  #deleteService(mesh: string, p: Params): Promise<Response> {
    const proto = checkProto(p.proto);
    checkServiceName(p.name);
    const { store, serialized, log } = this.#o;
    return serialized(mesh, () => {
      const runtime = this.#o.runtimeOf(mesh);
      const svc = store.deleteService(mesh, proto, p.name);
      runtime.setServices(store.services(mesh));
      log.info("service deleted", { mesh, service: `${proto}/${p.name}` });
      return Promise.resolve(json(svc));
    });
  }

  #openPort(mesh: string, caller: Caller, p: Params, body: string): Promise<Response> {
    const ip = checkListenIp(p.ip);
    const proto = checkProto(p.proto);
    const port = checkPortText(p.port);
    const target = checkPortBody(parseJsonObject(body));
    if (caller.remote) {
      const policy = this.#o.store.policy(mesh);
      if (!allowsListen(policy, ip)) {
        throw agentError(
          "listen_not_allowed",
          `Remote callers may not listen on ${ip} (policy listen: ${
            policy.listen.join(", ") || "none"
          })`,
        );
      }
    }
    const { store, serialized, log } = this.#o;
    return serialized(mesh, async () => {
      const runtime = this.#o.runtimeOf(mesh);
      const mapping: PortMapping = {
        ip,
        proto,
        port,
        target: await fixPoolUser(runtime, proto, target),
      };
      store.addPort(mesh, mapping);
      try {
        await runtime.openPort(mapping);
      } catch (err) {
        store.deletePort(mesh, ip, proto, port);
        log.warn("port not opened", { mesh, addr: formatAddr(ip, port), err: errText(err) });
        throw listenError(err, mapping);
      }
      log.info("port opened", {
        mesh,
        addr: formatAddr(ip, port),
        service: `${proto}/${target.service}`,
        user: caller.user,
      });
      // A mapping to a service nobody offers (yet), or not to this user, is made, with a warning.
      const [shown] = await this.#portsWithState(mesh, [mapping]);
      const state = shown.state;
      const warning = state && state.health !== "ok" && state.health !== "target_refusing"
        ? state.message
        : undefined;
      return json({ ...shown, ...(warning ? { warning } : {}) }, 201);
    });
  }

  #closePort(mesh: string, p: Params): Promise<Response> {
    const ip = checkListenIp(p.ip);
    const proto = checkProto(p.proto);
    const port = checkPortText(p.port);
    const { store, serialized, log } = this.#o;
    return serialized(mesh, async () => {
      const runtime = this.#o.runtimeOf(mesh);
      const mapping = store.port(mesh, ip, proto, port);
      if (!mapping) {
        throw agentError(
          "unknown_port",
          `Unknown port mapping "${ip}/${proto}/${port}" in mesh "${mesh}"`,
        );
      }
      await runtime.closePort(mapping);
      store.deletePort(mesh, ip, proto, port);
      log.info("port closed", { mesh, addr: formatAddr(ip, port) });
      return json(mapping);
    });
  }
}

/**
 * Fixes a new mapping's pool to one user, so a member who later publishes
 * the same name never joins it: the named user, else the only user offering
 * the service (of the named endpoint, if one is named). Throws `Conflict`
 * when several users offer it. When nobody offers it yet, or the hub cannot
 * be asked now, the mapping fixes its user at its first connection.
 */
async function fixPoolUser(
  runtime: MeshRuntime,
  proto: PortMapping["proto"],
  target: PortMapping["target"],
): Promise<PortMapping["target"]> {
  if (target.user) return target;
  let items;
  try {
    items = (await runtime.services({ offset: 0, limit: 500, q: target.service })).items;
  } catch (err) {
    if (err instanceof ServiceUnavailable) return target;
    throw err;
  }
  const pin = target.endpoint;
  const users = new Set(
    items
      .filter((s) => s.proto === proto && s.name === target.service)
      .filter((s) => !pin || s.providers.some((p) => p.endpoint === pin || p.name === pin))
      .map((s) => s.user),
  );
  if (users.size > 1) {
    throw agentError(
      "ambiguous_service",
      `Several users offer ${proto}/${target.service} (${
        [...users].sort().join(", ")
      }); name one in target.user`,
    );
  }
  return users.size === 1 ? { ...target, user: [...users][0] } : target;
}
