/**
 * The ztm agent: runs on each endpoint. `startAgent` opens the state
 * database, brings every joined mesh back (hub link, services, port
 * mappings), and serves the local API on loopback.
 *
 * @example
 * ```ts
 * const agent = await startAgent({ listen: { hostname: "127.0.0.1", port: 7777 }, database: "/home/me/ztm.db" });
 * await agent.close();
 * ```
 *
 * @module
 */
import { type HostPort, httpUrl } from "@ztm/shared/flags";
import { serveHttp } from "@ztm/shared/http";
import { errText, Logger } from "@ztm/shared/log";
import { loadOrCreateToken } from "@ztm/shared/files";
import { ApiAccess } from "./access.ts";
import { createAgentApp } from "./api.ts";
import type { InviteMaker } from "./invite_maker.ts";
import { join } from "node:path";
import { startMesh } from "./mesh.ts";
import { Renewal } from "./renew.ts";
import { AgentMetrics } from "./metrics.ts";
import { MeshProxies } from "./proxy/proxies.ts";
import type { MeshRuntime } from "./runtime.ts";
import { AgentStore } from "./store.ts";

export type { LocalService, MeshConfig, MeshRuntime, MeshStatus, PortMapping } from "./runtime.ts";
export {
  AgentClient,
  type AgentClientOptions,
  type AuditPage,
  type InviteJoinBody,
  type JoinBody,
  type ListQuery,
  type PortAddress,
  type ServiceSpec,
} from "./client.ts";
export type { MeshSummary } from "./api.ts";
export type { InviteMaker, InviteRequest, MadeInvite } from "./invite_maker.ts";
export type { ProxyStatus } from "./proxy/proxies.ts";

/** How to run an agent. */
export interface AgentConfig {
  listen: HostPort;
  /** SQLite file; created `0600`. */
  database: string;
  /** Endpoint name for joins that give none; default: the host name. */
  endpointName?: string;
  /** File holding the API token (made `0600` on first start); default `<database>.token`. */
  apiTokenFile?: string;
  log?: Logger;
  /** Metrics for `GET /api/metrics` (and `--metrics-listen`); made here when absent. */
  metrics?: AgentMetrics;
  /** UDP mappings: a flow's idle timeout in ms (default 60 s). */
  udpIdleMs?: number;
  /** UDP mappings: most flows per mapping (default 256). */
  udpFlows?: number;
  /** The mesh CA running in this process (`ztm start`), for invites from the dashboard. */
  invites?: InviteMaker;
}

/** A running agent. */
export interface RunningAgent {
  /** `http://host:port` of the local API. */
  url: string;
  runtimes: Map<string, MeshRuntime>;
  /** The file holding the API token. */
  tokenFile: string;
  /** A fresh one-time dashboard login URL. */
  loginUrl(): string;
  close(): Promise<void>;
}

/** Opens the store, restarts every joined mesh, and serves the API. */
export async function startAgent(config: AgentConfig): Promise<RunningAgent> {
  const log = config.log ?? new Logger("agent");
  const store = AgentStore.open(config.database);
  for (const m of store.migrateEndpointIds()) {
    log.warn("endpoint id migrated to a key-bound id", {
      mesh: m.mesh,
      endpoint: m.to,
      from: m.from,
    });
  }
  const tokenFile = config.apiTokenFile ?? `${config.database}.token`;
  const access = new ApiAccess(loadOrCreateToken(tokenFile));
  const runtimes = new Map<string, MeshRuntime>();
  const metrics = config.metrics ?? new AgentMetrics();
  metrics.watch(() => runtimes.values());
  // A port mapping's pool user fixed at its first use is stored, so a restart keeps it.
  const start = async (
    cfg: Parameters<typeof startMesh>[0],
    state: Parameters<typeof startMesh>[1],
  ): Promise<MeshRuntime> => {
    metrics.adopt(cfg); // its hub link's PING round trips go to this agent's histogram
    const runtime = await startMesh(cfg, state, log, {
      // The newest verified CRL of each mesh, kept so a restart does not forget a revocation.
      crlFile: join(`${config.database}-crl`, `${encodeURIComponent(cfg.name)}.pem`),
      poolUserFixed: (mapping, user) => store.fixPortUser(cfg.name, mapping, user),
      udpIdleMs: config.udpIdleMs,
      udpFlows: config.udpFlows,
      listedHubs: store.mesh(cfg.name)?.listedHubs ?? [],
      onListedHubs: (listed) => store.setListedHubs(cfg.name, listed),
    });
    // The certificate is renewed in the background, before it expires (`renew.ts`).
    const renewal = new Renewal({
      config: cfg,
      runtime,
      save: (pem) => store.setCertificate(cfg.name, pem),
      log,
    });
    renewal.start();
    const close = runtime.close.bind(runtime);
    return Object.assign(runtime, {
      renewal: () => renewal.state(),
      close: () => {
        renewal.close();
        return close();
      },
    });
  };
  for (const mesh of store.listMeshes()) {
    try {
      runtimes.set(
        mesh.name,
        await start(mesh, {
          services: store.services(mesh.name),
          ports: store.ports(mesh.name),
          exit: store.exit(mesh.name),
        }),
      );
      log.info("mesh resumed", { mesh: mesh.name, endpoint: mesh.endpointId });
    } catch (err) {
      log.error("mesh not resumed", { mesh: mesh.name, err: errText(err) });
    }
  }
  const proxies = new MeshProxies({ log, runtimeOf: (mesh) => runtimes.get(mesh) });
  for (const mesh of store.listMeshes()) {
    const proxy = store.proxy(mesh.name);
    if (proxy) await proxies.resume(mesh.name, proxy);
  }
  const app = createAgentApp({
    proxies,
    store,
    startMesh: start,
    runtimes,
    log,
    access,
    endpointName: config.endpointName,
    tokenFile,
    metrics: metrics.metrics,
    invites: config.invites,
  });
  const server = serveHttp({ listen: config.listen, app, log });
  return {
    url: httpUrl(server.addr),
    runtimes,
    tokenFile,
    loginUrl: () => `${httpUrl(server.addr)}/login?code=${access.newLoginCode()}`,
    async close() {
      await server.shutdown();
      await proxies.close();
      await Promise.all([...runtimes.values()].map((r) => r.close()));
      store.close();
    },
  };
}
