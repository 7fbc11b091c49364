/**
 * The agent's local REST API (DESIGN section 4): a literal route table over
 * the agent store and the running meshes.
 *
 * A handler validates the request, commits the change to the store, and only
 * then hands the runtime plain data (the whole service list, or one port
 * mapping); if the runtime cannot apply it (a port already in use), the store
 * change is undone so the database never holds what is not running. Writes to
 * one mesh are applied one at a time.
 *
 * Only this endpoint is managed for now: a request for another endpoint of the
 * mesh answers 501 until remote management (signed requests through the hub)
 * arrives. Private keys are stored and handed to the runtime, never returned.
 */
import {
  BadRequest,
  Conflict,
  Forbidden,
  NotFound,
  NotImplemented,
  ServiceUnavailable,
  ZtmError,
} from "@ztm/shared/errors";
import {
  type App,
  checkHostAndOrigin,
  createRouter,
  json,
  parsePageParams,
  readJsonObject,
  type Route,
} from "@ztm/shared/http";
import { commonNameOf, parseCertificate, serialOf } from "@ztm/shared/certs";
import { formatHostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import { ENDPOINT_ID_PATTERN, NAME_PATTERN, type ServiceProto } from "@ztm/shared/protocol";
import { checkJoinRequest } from "./join.ts";
import type { LocalService, MeshRuntime, PageQuery, PortMapping, StartMesh } from "./runtime.ts";
import type { AgentStore, MeshRecord } from "./store.ts";

/** Largest request body the API reads (a join body with three PEM files is ~3 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;
/** Page size when `limit` is not given. */
export const DEFAULT_PAGE_LIMIT = 100;
/** Largest page a query may ask for. */
export const MAX_PAGE_LIMIT = 500;
/** Most users one service may name. */
export const MAX_SERVICE_USERS = 1000;

/** What the agent app needs. */
export interface AgentAppOptions {
  store: AgentStore;
  /** Starts a newly joined mesh. */
  startMesh: StartMesh;
  /** Running meshes by name; the app adds joined meshes and removes left ones. */
  runtimes: Map<string, MeshRuntime>;
  log: Logger;
  /** Endpoint name for joins that do not give `agent.name`; defaults to the host name. */
  endpointName?: string;
}

/**
 * Builds the agent's API app. The app throws `ZtmError`s for refusals (render
 * them with `serveHttp`); it may be called concurrently.
 *
 * @example
 * ```ts
 * const app = createAgentApp({ store, startMesh, runtimes: new Map(), log });
 * serveHttp({ listen: { hostname: "127.0.0.1", port: 7777 }, app, log });
 * ```
 */
export function createAgentApp(opts: AgentAppOptions): App {
  const { store, runtimes, log } = opts;
  const routes: Route[] = [
    {
      method: "GET",
      pattern: "/api/meshes",
      handler: () => json(store.listMeshes().map((m) => meshSummary(m, runtimes.get(m.name)))),
    },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh",
      handler: (_req, p) => json(meshSummary(meshOf(p.mesh), runtimes.get(p.mesh))),
    },
    { method: "POST", pattern: "/api/meshes/:mesh", handler: (req, p) => join(req, p.mesh) },
    { method: "DELETE", pattern: "/api/meshes/:mesh", handler: (_req, p) => leave(p.mesh) },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh/endpoints",
      handler: async (req, p) => json(await runtimeOf(p.mesh).endpoints(pageQuery(req))),
    },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh/endpoints/:ep",
      handler: async (_req, p) => json(await runtimeOf(p.mesh).endpoint(p.ep)),
    },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh/services",
      handler: async (req, p) => json(await runtimeOf(p.mesh).services(pageQuery(req))),
    },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh/endpoints/:ep/services",
      handler: async (_req, p) => {
        await requireLocalEndpoint(p.mesh, p.ep);
        return json(store.services(p.mesh));
      },
    },
    {
      method: "POST",
      pattern: "/api/meshes/:mesh/endpoints/:ep/services/:proto/:name",
      handler: (req, p) => putService(req, p.mesh, p.ep, p.proto, p.name),
    },
    {
      method: "DELETE",
      pattern: "/api/meshes/:mesh/endpoints/:ep/services/:proto/:name",
      handler: (_req, p) => deleteService(p.mesh, p.ep, p.proto, p.name),
    },
    {
      method: "GET",
      pattern: "/api/meshes/:mesh/endpoints/:ep/ports",
      handler: async (_req, p) => {
        await requireLocalEndpoint(p.mesh, p.ep);
        return json(store.ports(p.mesh));
      },
    },
    {
      method: "POST",
      pattern: "/api/meshes/:mesh/endpoints/:ep/ports/:ip/:proto/:port",
      handler: (req, p) => openPort(req, p.mesh, p.ep, p.ip, p.proto, p.port),
    },
    {
      method: "DELETE",
      pattern: "/api/meshes/:mesh/endpoints/:ep/ports/:ip/:proto/:port",
      handler: (_req, p) => closePort(p.mesh, p.ep, p.ip, p.proto, p.port),
    },
  ];

  const serialized = createSerializer();

  function meshOf(name: string): MeshRecord {
    const mesh = store.mesh(name);
    if (!mesh) throw new NotFound("unknown_mesh", `Unknown mesh "${name}"`);
    return mesh;
  }

  function runtimeOf(name: string): MeshRuntime {
    meshOf(name);
    const runtime = runtimes.get(name);
    if (!runtime) {
      throw new ServiceUnavailable(
        "mesh_not_running",
        `Mesh "${name}" is joined but not running; see the agent log`,
      );
    }
    return runtime;
  }

  /**
   * Passes when `ep` is this agent's endpoint in `mesh` (its id, or its name
   * before any name the hub knows). Another endpoint answers 404 if the hub
   * does not know it, else 501.
   */
  async function requireLocalEndpoint(mesh: string, ep: string): Promise<void> {
    const config = meshOf(mesh);
    if (ep === config.endpointId || ep === config.endpointName) return;
    const other = await runtimeOf(mesh).endpoint(ep);
    throw new NotImplemented(
      "remote_management_unavailable",
      `Endpoint "${other.name}" is not this agent's endpoint "${config.endpointName}"; ` +
        "managing another endpoint arrives with remote management",
    );
  }

  async function join(req: Request, mesh: string): Promise<Response> {
    const body = await readJsonObject(req, MAX_BODY_BYTES);
    const { config, user } = await checkJoinRequest(mesh, body, {
      endpointName: opts.endpointName,
    });
    return await serialized(mesh, async () => {
      const record = store.addMesh(config);
      let runtime: MeshRuntime;
      try {
        runtime = await opts.startMesh(config, { services: [], ports: [] });
      } catch (err) {
        store.removeMesh(mesh);
        log.error("mesh not started", { mesh, err: errText(err) });
        throw err;
      }
      runtimes.set(mesh, runtime);
      log.info("mesh joined", { mesh, user, endpoint: config.endpointId });
      return json(meshSummary(record, runtime), 201);
    });
  }

  function leave(mesh: string): Promise<Response> {
    return serialized(mesh, async () => {
      const record = meshOf(mesh);
      const runtime = runtimes.get(mesh);
      runtimes.delete(mesh);
      if (runtime) {
        try {
          await runtime.close();
        } catch (err) {
          // Leaving must not fail half-way: the mesh is forgotten either way.
          log.warn("mesh close failed", { mesh, err: errText(err) });
        }
      }
      store.removeMesh(mesh);
      log.info("mesh left", { mesh, endpoint: record.endpointId });
      return json(meshSummary(record, undefined));
    });
  }

  async function putService(
    req: Request,
    mesh: string,
    ep: string,
    protoText: string,
    name: string,
  ): Promise<Response> {
    await requireLocalEndpoint(mesh, ep);
    const proto = checkProto(protoText);
    checkServiceName(name);
    const svc = checkServiceBody(proto, name, await readJsonObject(req, MAX_BODY_BYTES));
    return await serialized(mesh, () => {
      const runtime = runtimeOf(mesh);
      const created = store.putService(mesh, svc);
      runtime.setServices(store.services(mesh));
      log.info(created ? "service created" : "service replaced", {
        mesh,
        service: `${proto}/${name}`,
        addr: formatAddr(svc.host, svc.port),
      });
      return Promise.resolve(json(svc, 201));
    });
  }

  async function deleteService(
    mesh: string,
    ep: string,
    protoText: string,
    name: string,
  ): Promise<Response> {
    await requireLocalEndpoint(mesh, ep);
    const proto = checkProto(protoText);
    checkServiceName(name);
    return await serialized(mesh, () => {
      const runtime = runtimeOf(mesh);
      const svc = store.deleteService(mesh, proto, name);
      runtime.setServices(store.services(mesh));
      log.info("service deleted", { mesh, service: `${proto}/${name}` });
      return Promise.resolve(json(svc));
    });
  }

  async function openPort(
    req: Request,
    mesh: string,
    ep: string,
    ipText: string,
    protoText: string,
    portText: string,
  ): Promise<Response> {
    await requireLocalEndpoint(mesh, ep);
    const ip = checkListenIp(ipText);
    const proto = checkProto(protoText);
    const port = checkPortText(portText);
    const target = checkPortBody(await readJsonObject(req, MAX_BODY_BYTES));
    const mapping: PortMapping = { ip, proto, port, target };
    return await serialized(mesh, async () => {
      const runtime = runtimeOf(mesh);
      store.addPort(mesh, mapping);
      try {
        await runtime.openPort(mapping);
      } catch (err) {
        store.deletePort(mesh, ip, proto, port);
        log.warn("port not opened", { mesh, addr: formatAddr(ip, port), err: errText(err) });
        throw listenError(err, mapping);
      }
      log.info("port opened", { mesh, addr: formatAddr(ip, port), service: target.service });
      return json(mapping, 201);
    });
  }

  async function closePort(
    mesh: string,
    ep: string,
    ipText: string,
    protoText: string,
    portText: string,
  ): Promise<Response> {
    await requireLocalEndpoint(mesh, ep);
    const ip = checkListenIp(ipText);
    const proto = checkProto(protoText);
    const port = checkPortText(portText);
    return await serialized(mesh, async () => {
      const runtime = runtimeOf(mesh);
      const mapping = store.port(mesh, ip, proto, port);
      if (!mapping) {
        throw new NotFound(
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

  const router = createRouter(routes);
  return async (req) => {
    checkHostAndOrigin(req, true);
    // The local API token (DESIGN section 4: `Authorization: Bearer`, else 401)
    // is checked here, once for every route, when that issue lands.
    return await router(req);
  };
}

/** Runs tasks of one key one after another; tasks of different keys run freely. */
function createSerializer(): <T>(key: string, task: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<void>>();
  return <T>(key: string, task: () => Promise<T>): Promise<T> => {
    const run = (tails.get(key) ?? Promise.resolve()).then(task);
    const tail = run.then(() => {}, () => {}); // the caller gets the error through `run`
    tails.set(key, tail);
    tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key);
    });
    return run;
  };
}

/** A mesh as the API shows it: no CA or certificate PEM, never the private key. */
function meshSummary(mesh: MeshRecord, runtime: MeshRuntime | undefined) {
  const cert = parseCertificate(mesh.certificate);
  const status = runtime?.status();
  return {
    name: mesh.name,
    endpoint: { id: mesh.endpointId, name: mesh.endpointName },
    user: commonNameOf(cert) ?? "",
    bootstraps: mesh.bootstraps,
    joinedAt: mesh.joinedAt,
    certificate: { serial: serialOf(cert), notAfter: cert.notAfter.toISOString() },
    status: status
      ? {
        connected: status.connected,
        hub: status.hub,
        lastError: status.lastError,
        since: status.since,
      }
      : null,
  };
}

function pageQuery(req: Request): PageQuery {
  return parsePageParams(new URL(req.url).searchParams, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT);
}

function checkFields(obj: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw new BadRequest(
        "bad_request",
        `${what} has an unknown field "${key}"; allowed: ${allowed.join(", ")}`,
      );
    }
  }
}

function checkProto(text: string): ServiceProto {
  if (text !== "tcp") throw new BadRequest("bad_proto", `Unknown protocol "${text}"; use tcp`);
  return text;
}

const NAME_RULE = "1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -";

function checkServiceName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BadRequest("bad_service_name", `Bad service name "${name}": use ${NAME_RULE}`);
  }
}

function checkServiceBody(
  proto: ServiceProto,
  name: string,
  body: Record<string, unknown>,
): LocalService {
  checkFields(body, ["host", "port", "users"], "Service");
  const host = checkHost(body.host);
  const port = body.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BadRequest("bad_port", `Bad port ${JSON.stringify(port)}: use a number 1 to 65535`);
  }
  return { proto, name, host, port, users: checkUsers(body.users) };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOST_LABEL = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$/;

/** The canonical text of an IPv6 literal (brackets optional), or undefined. */
function canonicalIpv6(text: string): string | undefined {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (!bare.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(bare)) return undefined;
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return undefined; // not a valid IPv6 literal
  }
}

/** A service target host: an IP literal or a DNS name of at most 253 characters. */
function checkHost(value: unknown): string {
  if (typeof value !== "string" || value === "" || value.length > 253) {
    throw new BadRequest(
      "bad_host",
      "host must be a host name or IP address of 1 to 253 characters",
    );
  }
  if (IPV4.test(value)) return value;
  const v6 = canonicalIpv6(value);
  if (v6 !== undefined) return v6;
  if (!value.replace(/\.$/, "").split(".").every((label) => HOST_LABEL.test(label))) {
    throw new BadRequest(
      "bad_host",
      `Bad host ${JSON.stringify(value)}: use a host name or IP address`,
    );
  }
  return value;
}

function checkUsers(value: unknown): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) || value.length > MAX_SERVICE_USERS ||
    value.some((u) => typeof u !== "string")
  ) {
    throw new BadRequest(
      "bad_users",
      `users must be a list of at most ${MAX_SERVICE_USERS} user names, or ["*"]`,
    );
  }
  const users = [...new Set(value as string[])];
  if (users.includes("*")) {
    if (users.length !== 1) {
      throw new BadRequest("bad_users", `users is either ["*"] (every member) or a list of names`);
    }
    return users;
  }
  const bad = users.find((u) => !NAME_PATTERN.test(u));
  if (bad !== undefined) {
    throw new BadRequest("bad_users", `Bad user name "${bad}" in users: use ${NAME_RULE}`);
  }
  return users;
}

/** A listen address: an IPv4 or IPv6 literal (stored canonical) or `localhost`. */
function checkListenIp(text: string): string {
  if (text.toLowerCase() === "localhost") return "localhost";
  if (IPV4.test(text)) return text;
  const v6 = canonicalIpv6(text);
  if (v6 !== undefined) return v6;
  throw new BadRequest(
    "bad_ip",
    `Bad listen address "${text}": use an IPv4 or IPv6 address or localhost`,
  );
}

function checkPortText(text: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) {
    throw new BadRequest("bad_port", `Bad port "${text}": use 1 to 65535`);
  }
  return port;
}

function checkPortBody(body: Record<string, unknown>): PortMapping["target"] {
  checkFields(body, ["target"], "Port mapping");
  const t = body.target;
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    throw new BadRequest("bad_target", "target must be an object {service, user?, endpoint?}");
  }
  const fields = t as Record<string, unknown>;
  checkFields(fields, ["service", "user", "endpoint"], "target");
  const { service, user, endpoint } = fields;
  if (typeof service !== "string" || !NAME_PATTERN.test(service)) {
    throw new BadRequest(
      "bad_target",
      `Bad target service ${JSON.stringify(service)}: use ${NAME_RULE}`,
    );
  }
  const target: PortMapping["target"] = { service };
  if (user !== undefined) {
    if (typeof user !== "string" || !NAME_PATTERN.test(user)) {
      throw new BadRequest(
        "bad_target",
        `Bad target user ${JSON.stringify(user)}: use ${NAME_RULE}`,
      );
    }
    target.user = user;
  }
  if (endpoint !== undefined) {
    if (
      typeof endpoint !== "string" ||
      !(NAME_PATTERN.test(endpoint) || ENDPOINT_ID_PATTERN.test(endpoint))
    ) {
      throw new BadRequest(
        "bad_target",
        `Bad target endpoint ${JSON.stringify(endpoint)}: use an endpoint id or name`,
      );
    }
    target.endpoint = endpoint;
  }
  return target;
}

/** Turns a raw listen failure into the error the API answers with. */
function listenError(err: unknown, m: PortMapping): unknown {
  if (err instanceof ZtmError) return err;
  const addr = `${m.ip}/${m.proto}/${m.port}`;
  if (err instanceof Deno.errors.AddrInUse) {
    return new Conflict("port_in_use", `Port ${addr} is already in use`, { cause: err });
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return new BadRequest(
      "address_unavailable",
      `Address ${m.ip} is not an address of this computer`,
      { cause: err },
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new Forbidden("port_not_permitted", `Not permitted to listen on ${addr}`, {
      cause: err,
    });
  }
  return err;
}

function formatAddr(hostname: string, port: number): string {
  return formatHostPort({ hostname, port });
}
