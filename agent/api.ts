/**
 * The agent's local REST API: one literal route table (`ROUTES`, paths from
 * the contract in `@ztm/shared/agent_api`) over the agent store and the
 * running meshes.
 *
 * Every request passes the access checks first: a loopback `Host`, no
 * foreign `Origin`, and for `/api/…` the API token (or a dashboard session
 * from a one-time login URL: its cookie and its secret, see `access.ts`).
 * Routes for one endpoint's services, port mappings and audit log go to
 * `EndpointOps` — directly for this endpoint, or as a signed request through
 * the hub for another (`RemoteManagement`), whose answer comes back with the
 * target's status. Private keys are stored and handed to the runtime, never
 * returned.
 */
import { sharedError, Unauthorized } from "@ztm/shared/errors";
import {
  type App,
  checkHostAndOrigin,
  findRoute,
  json,
  type Params,
  parsePageParams,
  readJsonObject,
  readText,
} from "@ztm/shared/http";
import {
  AGENT_PATHS as P,
  agentError,
  agentPath,
  DEFAULT_PAGE_LIMIT,
  ENDPOINT_ROUTES,
  MAX_BODY_BYTES,
  MAX_JOIN_WAIT_S,
  MAX_PAGE_LIMIT,
  type MeshSummary,
  type RenewalState,
} from "@ztm/shared/agent_api";
import { caExpiry } from "@ztm/shared/ca_expiry";
import { commonNameOf, parseCertificate, parseCertificates, serialOf } from "@ztm/shared/certs";
import { errText, type Logger } from "@ztm/shared/log";
import type { Metrics } from "@ztm/shared/metrics";
import { ApiAccess, SESSION_HEADER } from "./access.ts";
import { DashboardPages } from "./dashboard.ts";
import { EndpointOps } from "./endpoint_ops.ts";
import { describeCa, explainHubFailure } from "./hub_errors.ts";
import { enrollWithInvite } from "./enroll.ts";
import {
  checkInviteRequest,
  type InviteMaker,
  makesInvitesFor,
  noInvitesHere,
} from "./invite_maker.ts";
import { checkBootstraps, checkJoinRequest } from "./join.ts";
import { checkPolicyBody } from "./policy.ts";
import { checkProxyBody, type MeshProxies } from "./proxy/proxies.ts";
import { ExitPolicy, type ExitRule } from "./proxy/exit_policy.ts";
import { RemoteManagement } from "./remote.ts";
import type { MeshRuntime, PageQuery, StartMesh } from "./runtime.ts";
import type { AgentStore, MeshRecord } from "./store.ts";

export type { MeshSummary };
export { DEFAULT_PAGE_LIMIT, MAX_BODY_BYTES, MAX_JOIN_WAIT_S, MAX_PAGE_LIMIT };

/**
 * Who may call a route: anyone on loopback (`open`: assets, the login URL), a
 * browser with or without a session (`page`: the dashboard or its sign-in
 * page), or only a caller with the API token or a whole dashboard session
 * (`token`: every `/api/…` route).
 */
type RouteAccess = "open" | "page" | "token";

/** A route of the agent's API: its handler gets the app's handlers, the request and the path's parameters. */
interface AgentRoute {
  method: string;
  pattern: string;
  access: RouteAccess;
  handle: (app: AgentHandlers, req: Request, p: Params) => Promise<Response>;
}

/** Every route the agent serves (unknown paths answer 401 without the token, 404 with it). */
const ROUTES: AgentRoute[] = [
  route("open", "GET", P.asset, (a, req) => a.asset(req)),
  route("open", "HEAD", P.asset, (a, req) => a.asset(req)),
  route("open", "GET", P.login, (a, req) => a.login(req)),
  route("page", "GET", P.dashboard, (a, req) => a.dashboard(req)),
  route("token", "GET", P.meshes, (a) => a.meshes()),
  route("token", "GET", P.mesh, (a, _req, p) => a.mesh(p.mesh)),
  route("token", "POST", P.mesh, (a, req, p) => a.join(req, p.mesh)),
  route("token", "PATCH", P.mesh, (a, req, p) => a.setHubs(req, p.mesh)),
  route("token", "DELETE", P.mesh, (a, _req, p) => a.leave(p.mesh)),
  route("token", "POST", P.invites, (a, req, p) => a.invites(req, p.mesh)),
  route("token", "GET", P.policy, (a, _req, p) => a.policy(p.mesh)),
  route("token", "PUT", P.policy, (a, req, p) => a.setPolicy(req, p.mesh)),
  route("token", "GET", P.proxy, (a, _req, p) => a.proxy(p.mesh)),
  route("token", "PUT", P.proxy, (a, req, p) => a.proxyOn(req, p.mesh)),
  route("token", "DELETE", P.proxy, (a, _req, p) => a.proxyOff(p.mesh)),
  route("token", "GET", P.exit, (a, _req, p) => a.exit(p.mesh)),
  route("token", "PUT", P.exit, (a, req, p) => a.exitOn(req, p.mesh)),
  route("token", "DELETE", P.exit, (a, _req, p) => a.exitOff(p.mesh)),
  route("token", "GET", P.endpoints, (a, req, p) => a.endpoints(req, p.mesh)),
  route("token", "GET", P.endpoint, (a, _req, p) => a.endpoint(p.mesh, p.ep)),
  route("token", "GET", P.meshServices, (a, req, p) => a.meshServices(req, p.mesh)),
  // An endpoint's services, port mappings and audit log: here or through the hub.
  ...ENDPOINT_ROUTES.map(({ method, pattern }) =>
    route(
      "token",
      method,
      `${P.endpoint}/${pattern}`,
      (a, req, p) => a.forEndpoint(req, p, pattern),
    )
  ),
  route("token", "GET", P.metrics, (a) => a.metrics()),
  route("token", "POST", P.loginCodes, (a, req) => a.loginCode(req)),
];

/** One row of `ROUTES`. */
function route(
  access: RouteAccess,
  method: string,
  pattern: string,
  handle: AgentRoute["handle"],
): AgentRoute {
  return { method, pattern, access, handle };
}

/** The handlers `ROUTES` calls, made by `createAgentApp` over its store and meshes. */
interface AgentHandlers {
  asset(req: Request): Promise<Response>;
  login(req: Request): Promise<Response>;
  dashboard(req: Request): Promise<Response>;
  meshes(): Promise<Response>;
  mesh(mesh: string): Promise<Response>;
  join(req: Request, mesh: string): Promise<Response>;
  setHubs(req: Request, mesh: string): Promise<Response>;
  leave(mesh: string): Promise<Response>;
  /** An invite from the mesh's CA, when this agent runs beside it (`invite_maker.ts`). */
  invites(req: Request, mesh: string): Promise<Response>;
  policy(mesh: string): Promise<Response>;
  setPolicy(req: Request, mesh: string): Promise<Response>;
  proxy(mesh: string): Promise<Response>;
  proxyOn(req: Request, mesh: string): Promise<Response>;
  proxyOff(mesh: string): Promise<Response>;
  exit(mesh: string): Promise<Response>;
  exitOn(req: Request, mesh: string): Promise<Response>;
  exitOff(mesh: string): Promise<Response>;
  endpoints(req: Request, mesh: string): Promise<Response>;
  endpoint(mesh: string, ep: string): Promise<Response>;
  meshServices(req: Request, mesh: string): Promise<Response>;
  /** `pattern` is the endpoint route's (`ENDPOINT_ROUTES`), filled from `p` for `EndpointOps`. */
  forEndpoint(req: Request, p: Params, pattern: string): Promise<Response>;
  metrics(): Promise<Response>;
  loginCode(req: Request): Promise<Response>;
}

/** What the agent app needs. */
export interface AgentAppOptions {
  store: AgentStore;
  /** Starts a newly joined mesh. */
  startMesh: StartMesh;
  /** Running meshes by name; the app adds joined meshes and removes left ones. */
  runtimes: Map<string, MeshRuntime>;
  log: Logger;
  /** The API token and login sessions. */
  access: ApiAccess;
  /** Served as `GET /api/metrics` (behind the token, like every route). */
  metrics?: Metrics;
  /** Endpoint name for joins that do not give `agent.name`; defaults to the host name. */
  endpointName?: string;
  /** The API token's file, named on the dashboard's sign-in page. */
  tokenFile?: string;
  /** The meshes' proxies (`…/proxy` routes); without it those routes answer 404. */
  proxies?: MeshProxies;
  /**
   * The mesh CA this agent runs beside (`ztm start` only, see `invite_maker.ts`):
   * `POST /api/meshes/{mesh}/invites` for its mesh; without it that route answers 404.
   */
  invites?: InviteMaker;
}

/**
 * Builds the agent's API app. The app throws `ZtmError`s for refusals (render
 * them with `serveHttp`); it may be called concurrently.
 *
 * @example
 * ```ts
 * const app = createAgentApp({ store, startMesh, runtimes: new Map(), log, access: new ApiAccess(token) });
 * serveHttp({ listen: { hostname: "127.0.0.1", port: 7777 }, app, log });
 * ```
 */
export function createAgentApp(opts: AgentAppOptions): App {
  const { store, runtimes, log, access } = opts;
  const summaryOf = (...args: Parameters<typeof meshSummary>): MeshSummary => ({
    ...meshSummary(...args),
    canInvite: makesInvitesFor(opts.invites, args[0].ca),
  });
  const serialized = createSerializer();
  const ops = new EndpointOps({
    store,
    runtimeOf,
    userOf: (mesh) => commonNameOf(parseCertificate(meshOf(mesh).certificate)) ?? "",
    serialized,
    log,
  });
  const remote = new RemoteManagement({
    ops,
    log,
    nonces: { add: (nonce, expires, now) => store.spendNonce(nonce, expires, now) },
  });
  const attach = (name: string, runtime: MeshRuntime) =>
    runtime.setManageHandler(remote.handler(() => meshOf(name), () => runtimeOf(name)));
  for (const [name, runtime] of runtimes) attach(name, runtime);
  const dashboard = new DashboardPages({
    meshes: () => store.listMeshes().map((m) => summaryOf(m, runtimes.get(m.name))),
    endpointName: opts.endpointName,
    tokenFile: opts.tokenFile,
  });

  const handlers: AgentHandlers = {
    asset: async (req) => {
      const asset = await dashboard.asset(req);
      if (!asset) throw sharedError("unknown_route", `No route for ${new URL(req.url).pathname}`);
      return asset;
    },
    login: (req) => login(req, new URL(req.url)),
    dashboard: async (req) => {
      const authorized = access.authorized(req);
      // The cookie alone gets the page without data; its script sends the secret for the rest.
      if (authorized || access.hasSessionCookie(req)) return await dashboard.app(authorized);
      return await dashboard.signedOut(req, false);
    },
    meshes: () =>
      Promise.resolve(
        json(store.listMeshes().map((m) => summaryOf(m, runtimes.get(m.name)))),
      ),
    mesh: (mesh) => Promise.resolve(json(summaryOf(meshOf(mesh), runtimes.get(mesh)))),
    join,
    setHubs,
    leave,
    invites: async (req, mesh) => {
      // Only beside the mesh's own CA; the answer holds the invite's secret.
      const record = meshOf(mesh);
      if (!opts.invites || !makesInvitesFor(opts.invites, record.ca)) throw noInvitesHere(mesh);
      const made = await opts.invites.create(
        checkInviteRequest(await readJsonObject(req, MAX_BODY_BYTES)),
      );
      log.info("invite made", { mesh, user: made.user, invite: made.id });
      return json(made, 201);
    },
    policy: (mesh) => {
      meshOf(mesh);
      return Promise.resolve(json(store.policy(mesh)));
    },
    setPolicy,
    proxy: (mesh) => Promise.resolve(json(proxiesOf(mesh).status(mesh, store.proxy(mesh)))),
    proxyOn,
    proxyOff,
    exit: (mesh) => {
      meshOf(mesh);
      return Promise.resolve(json({ rules: store.exit(mesh) }));
    },
    exitOn,
    exitOff,
    endpoints: async (req, mesh) => json(await runtimeOf(mesh).endpoints(pageQuery(req))),
    endpoint: async (mesh, ep) => json(await runtimeOf(mesh).endpoint(ep)),
    meshServices: async (req, mesh) => json(await runtimeOf(mesh).services(pageQuery(req))),
    forEndpoint: (req, p, pattern) => forEndpoint(req, p.mesh, p.ep, agentPath(pattern, p)),
    metrics: () => {
      if (!opts.metrics) throw agentError("no_metrics", "This agent keeps no metrics");
      return Promise.resolve(opts.metrics.response());
    },
    loginCode: (req) => {
      const host = req.headers.get("host") ?? "127.0.0.1";
      return Promise.resolve(
        json({ url: `http://${host}${P.login}?code=${access.newLoginCode()}` }, 201),
      );
    },
  };

  /** `PUT /api/meshes/{mesh}/policy`: fields not given keep their value. */
  async function setPolicy(req: Request, mesh: string): Promise<Response> {
    meshOf(mesh);
    const policy = checkPolicyBody(await readJsonObject(req, MAX_BODY_BYTES), store.policy(mesh));
    store.setPolicy(mesh, policy);
    store.addAudit(mesh, {
      user: userOf(mesh),
      via: "local",
      method: "PUT",
      path: "policy",
      status: 200,
      outcome: "ok",
    });
    log.info("policy changed", { mesh });
    return json(policy);
  }

  function meshOf(name: string): MeshRecord {
    const mesh = store.mesh(name);
    if (!mesh) throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
    return mesh;
  }

  function userOf(mesh: string): string {
    return commonNameOf(parseCertificate(meshOf(mesh).certificate)) ?? "";
  }

  function proxiesOf(mesh: string): MeshProxies {
    meshOf(mesh);
    if (!opts.proxies) throw agentError("no_proxy", "This agent runs no proxies");
    return opts.proxies;
  }

  /** `PUT /api/meshes/{mesh}/proxy` `{listen?}`: binds first, then stores (a taken port stores nothing). */
  async function proxyOn(req: Request, mesh: string): Promise<Response> {
    const proxies = proxiesOf(mesh);
    const config = checkProxyBody(await readJsonObject(req, MAX_BODY_BYTES));
    return await serialized(mesh, async () => {
      meshOf(mesh);
      await proxies.start(mesh, config);
      try {
        store.setProxy(mesh, config);
      } catch (err) {
        await proxies.stop(mesh);
        throw err;
      }
      store.addAudit(mesh, {
        user: userOf(mesh),
        via: "local",
        method: "PUT",
        path: "proxy",
        status: 200,
        outcome: "ok",
        detail: `proxy on ${config.listen}`,
      });
      return json(proxies.status(mesh, config));
    });
  }

  /** `DELETE /api/meshes/{mesh}/proxy`: off (stored off first, then the listener closes). */
  function proxyOff(mesh: string): Promise<Response> {
    const proxies = proxiesOf(mesh);
    return serialized(mesh, async () => {
      meshOf(mesh);
      const was = store.removeProxy(mesh);
      await proxies.stop(mesh);
      if (was) {
        store.addAudit(mesh, {
          user: userOf(mesh),
          via: "local",
          method: "DELETE",
          path: "proxy",
          status: 200,
          outcome: "ok",
        });
      }
      return json(proxies.status(mesh, null));
    });
  }

  /**
   * `PUT /api/meshes/{mesh}/exit` `{rules}`: this endpoint offers an exit
   * (`tcp/exit`) to the destinations and users its rules list; checked
   * before it is stored (`proxy/exit_policy.ts`).
   */
  async function exitOn(req: Request, mesh: string): Promise<Response> {
    const body = await readJsonObject(req, MAX_BODY_BYTES);
    for (const key of Object.keys(body)) {
      if (key !== "rules") {
        throw agentError("bad_request", `Unknown field "${key}"; allowed: rules`);
      }
    }
    if (!Array.isArray(body.rules)) {
      throw agentError("bad_exit_rules", "rules: a list of {destinations, ports?, users?}");
    }
    const rules = body.rules as ExitRule[];
    new ExitPolicy(rules); // throws BadRequest naming the bad rule
    return await serialized(mesh, () => {
      meshOf(mesh);
      store.setExit(mesh, rules);
      runtimes.get(mesh)?.setExit?.(rules);
      store.addAudit(mesh, {
        user: userOf(mesh),
        via: "local",
        method: "PUT",
        path: "exit",
        status: 200,
        outcome: "ok",
        detail: `exit with ${rules.length} rule(s)`,
      });
      return Promise.resolve(json({ rules }));
    });
  }

  /** `DELETE /api/meshes/{mesh}/exit`: no exit any more. */
  function exitOff(mesh: string): Promise<Response> {
    return serialized(mesh, () => {
      meshOf(mesh);
      const was = store.removeExit(mesh);
      runtimes.get(mesh)?.setExit?.(null);
      if (was) {
        store.addAudit(mesh, {
          user: userOf(mesh),
          via: "local",
          method: "DELETE",
          path: "exit",
          status: 200,
          outcome: "ok",
        });
      }
      return Promise.resolve(json({ rules: null }));
    });
  }

  function runtimeOf(name: string): MeshRuntime {
    meshOf(name);
    const runtime = runtimes.get(name);
    if (!runtime) {
      throw agentError(
        "mesh_not_running",
        `Mesh "${name}" is joined but not running; see the agent log`,
      );
    }
    return runtime;
  }

  /**
   * Runs an endpoint operation: here when `ep` is this endpoint (its id or
   * name), else signed and sent through the hub to the endpoint the hub knows
   * by that id or name.
   */
  async function forEndpoint(
    req: Request,
    mesh: string,
    ep: string,
    path: string,
  ): Promise<Response> {
    const config = meshOf(mesh);
    const url = new URL(req.url);
    const full = path + url.search;
    const body = req.method === "GET" || req.method === "DELETE"
      ? ""
      : await readText(req, MAX_BODY_BYTES);
    const local = { user: userOf(mesh), via: "local", remote: false };
    if (ep === config.endpointId || ep === config.endpointName) {
      return await ops.run(mesh, local, req.method, full, body);
    }
    const runtime = runtimeOf(mesh);
    const target = await runtime.endpoint(ep);
    if (target.id === config.endpointId) return await ops.run(mesh, local, req.method, full, body);
    return await remote.send(config, runtime, target, req.method, full, body);
  }

  async function join(req: Request, mesh: string): Promise<Response> {
    const wait = waitSeconds(req);
    let body = await readJsonObject(req, MAX_BODY_BYTES);
    // With an invite, the agent makes the key and gets the certificate itself (`enroll.ts`).
    if ("invite" in body) {
      if (store.mesh(mesh)) {
        throw agentError("mesh_exists", `Mesh "${mesh}" is joined already; leave it first`);
      }
      body = await enrollWithInvite(body, { endpointName: opts.endpointName, log });
    }
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
      attach(mesh, runtime);
      const unreachable = await firstSession(runtime, config.ca, wait);
      if (unreachable) {
        runtimes.delete(mesh);
        await runtime.close().catch(() => {});
        store.removeMesh(mesh);
        log.warn("join undone: hub not reached", { mesh, err: unreachable });
        throw agentError(
          "hub_unreachable",
          `Could not reach the hub of mesh "${mesh}", so it was not joined: ${unreachable}`,
        );
      }
      log.info("mesh joined", { mesh, user, endpoint: config.endpointId });
      return json(summaryOf(record, runtime), 201);
    });
  }

  /**
   * `PATCH /api/meshes/{mesh}` `{bootstraps}`: new hub addresses, used at once
   * (the hub link restarts; services and port mappings stay). With `?wait=`, a
   * hub that cannot be reached leaves the old addresses in place.
   */
  async function setHubs(req: Request, mesh: string): Promise<Response> {
    const wait = waitSeconds(req);
    const body = await readJsonObject(req, MAX_BODY_BYTES);
    for (const key of Object.keys(body)) {
      if (key !== "bootstraps") {
        throw agentError("bad_request", `Unknown field "${key}"; allowed: bootstraps`);
      }
    }
    const bootstraps = checkBootstraps(body.bootstraps);
    return await serialized(mesh, async () => {
      const before = meshOf(mesh);
      const restart = async (hubs: string[]) => {
        const record = store.setBootstraps(mesh, hubs);
        const old = runtimes.get(mesh);
        runtimes.delete(mesh);
        await old?.close().catch((err) =>
          log.warn("mesh close failed", { mesh, err: errText(err) })
        );
        const runtime = await opts.startMesh(record, {
          services: store.services(mesh),
          exit: store.exit(mesh),
          ports: store.ports(mesh),
        });
        runtimes.set(mesh, runtime);
        attach(mesh, runtime);
        return { record, runtime };
      };
      const { record, runtime } = await restart(bootstraps);
      const unreachable = await firstSession(runtime, record.ca, wait);
      if (unreachable) {
        await restart(before.bootstraps);
        throw agentError(
          "hub_unreachable",
          `Could not reach the new hubs of mesh "${mesh}", so it keeps ${
            before.bootstraps.join(", ")
          }: ${unreachable}`,
        );
      }
      log.info("mesh hubs changed", { mesh, addr: bootstraps.join(",") });
      return json(summaryOf(record, runtime));
    });
  }

  /** Waits up to `wait` s for the first hub session; the reasons it failed in plain words, or null. */
  async function firstSession(
    runtime: MeshRuntime,
    caPem: string,
    wait: number,
  ): Promise<string | null> {
    if (wait === 0 || !runtime.firstSession) return null;
    const failures = await runtime.firstSession(wait * 1000);
    if (failures === null) return null;
    if (failures.length === 0) return `no session with a hub within ${wait} s`;
    const ca = await describeCa(caPem);
    return failures.map((f) => explainHubFailure(f.hub, f.why, ca)).join("; ");
  }

  function leave(mesh: string): Promise<Response> {
    return serialized(mesh, async () => {
      const record = meshOf(mesh);
      const runtime = runtimes.get(mesh);
      // The answer shows the mesh as it was, its certificate's renewal state included.
      const renewal = runtime?.renewal?.();
      runtimes.delete(mesh);
      await opts.proxies?.stop(mesh);
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
      return json(summaryOf(record, undefined, renewal));
    });
  }

  return async (req) => {
    checkHostAndOrigin(req, true);
    const authorized = access.authorized(req);
    let found;
    try {
      found = findRoute(ROUTES, req.method, new URL(req.url).pathname);
    } catch (err) {
      if (!authorized) throw tokenRequired(req); // an unknown path tells nothing without the token
      throw err;
    }
    if (found.route.access === "token" && !authorized) throw tokenRequired(req);
    return await found.route.handle(handlers, req, found.params);
  };

  function tokenRequired(req: Request): Unauthorized {
    // The file's path (not its content) tells a caller with the wrong token where to look.
    return agentError(
      "token_required",
      access.hasSessionCookie(req)
        ? `A dashboard session needs its secret in ${SESSION_HEADER} besides the cookie`
        : "Send the agent's API token as Authorization: Bearer <token>" +
          (opts.tokenFile ? `; this agent's token is in ${opts.tokenFile}` : ""),
    );
  }

  async function login(req: Request, url: URL): Promise<Response> {
    const session = access.redeem(url.searchParams.get("code") ?? "");
    if (!session) {
      log.warn("login refused: unknown, used or expired code");
      return await dashboard.signedOut(req, true);
    }
    log.info("dashboard login");
    // The page with the session's secret, once; its script keeps it and moves the address to `/`.
    const page = await dashboard.app(true, session.secret);
    page.headers.set("set-cookie", ApiAccess.cookie(session, req));
    return page;
  }
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

function meshSummary(
  mesh: MeshRecord,
  runtime: MeshRuntime | undefined,
  renewalBefore?: RenewalState,
): MeshSummary {
  const cert = parseCertificate(mesh.certificate);
  const status = runtime?.status();
  return {
    name: mesh.name,
    endpoint: { id: mesh.endpointId, name: mesh.endpointName },
    user: commonNameOf(cert) ?? "",
    bootstraps: mesh.bootstraps,
    joinedAt: mesh.joinedAt,
    certificate: {
      serial: serialOf(cert),
      notAfter: cert.notAfter.toISOString(),
      ...(runtime?.renewal
        ? { renewal: runtime.renewal() }
        : renewalBefore
        ? { renewal: renewalBefore }
        : {}),
    },
    // With a bundle (a CA rotation), the certificate that ends first.
    caCertificate: caExpiry(
      new Date(Math.min(...parseCertificates(mesh.ca).map((c) => c.notAfter.getTime()))),
      Date.now(),
    ),
    status: status
      ? {
        connected: status.connected,
        hub: status.hub,
        lastError: status.lastError,
        since: status.since,
        ...(status.hubs
          ? {
            hubs: status.hubs.map((hub) =>
              !hub.connected && hub.lastError
                ? { ...hub, problem: explainHubFailure(hub.address, hub.lastError, "CA") }
                : hub
            ),
          }
          : {}),
        ...(status.crlAlarm ? { crlAlarm: status.crlAlarm } : {}),
      }
      : null,
  };
}

/** `?wait=S`: how long a join or hub change waits for the first hub session (0: not at all). */
function waitSeconds(req: Request): number {
  const text = new URL(req.url).searchParams.get("wait");
  if (text === null) return 0;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > MAX_JOIN_WAIT_S) {
    throw agentError(
      "bad_wait",
      `Bad wait "${text.slice(0, 20)}": seconds from 0 to ${MAX_JOIN_WAIT_S}`,
    );
  }
  return n;
}

function pageQuery(req: Request): PageQuery {
  return parsePageParams(new URL(req.url).searchParams, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT);
}
