/**
 * The agent's proxies, at most one per mesh: started from the stored config
 * when the agent starts, and on `PUT /api/meshes/{mesh}/proxy`; stopped on
 * `DELETE` and when the mesh is left. A proxy outlives its mesh runtime
 * (a hub change restarts the runtime): each connection asks for the current
 * one.
 *
 * The proxy has no authentication (any local process may use it, as it may
 * use a port mapping), so it listens on loopback addresses only.
 */
import { formatHostPort, isLoopbackHost, parseHostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import type { MeshRuntime } from "../runtime.ts";
import { MeshDialer } from "./mesh_dialer.ts";
import { ProxyServer } from "./server.ts";
import { agentError, type ProxyStatus } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { ProxyStatus };

/** The proxy's listen address when none is given. */
export const DEFAULT_PROXY_LISTEN = "127.0.0.1:1080";

/** A mesh's proxy, as stored. */
export interface ProxyConfig {
  /** `host:port` on a loopback address. */
  listen: string;
  /** The endpoint (name or id) whose exit carries names outside the mesh; none: they are refused. */
  exit?: string;
}

/**
 * Checks a `PUT …/proxy` body: `{listen?}`, a loopback `host:port` (default
 * `DEFAULT_PROXY_LISTEN`). Throws `BadRequest` naming the problem.
 */
export function checkProxyBody(body: Record<string, unknown>): ProxyConfig {
  for (const key of Object.keys(body)) {
    if (key !== "listen" && key !== "exit") {
      throw agentError("bad_request", `Unknown field "${key}"; allowed: listen, exit`);
    }
  }
  const exit = body.exit;
  if (
    exit !== undefined && exit !== null && (typeof exit !== "string" || !NAME_PATTERN.test(exit))
  ) {
    throw agentError("bad_exit", "Bad exit: the name or id of the endpoint that offers it");
  }
  const listen = body.listen ?? DEFAULT_PROXY_LISTEN;
  if (typeof listen !== "string" || listen.length > 100) {
    throw agentError("bad_listen", `Bad listen: use host:port, as in ${DEFAULT_PROXY_LISTEN}`);
  }
  let addr;
  try {
    addr = parseHostPort(listen);
  } catch (err) {
    throw agentError(
      "bad_listen",
      `${errText(err)}; use host:port, as in ${DEFAULT_PROXY_LISTEN}`,
    );
  }
  if (!isLoopbackHost(addr.hostname)) {
    throw agentError(
      "listen_not_loopback",
      `The proxy has no authentication, so it listens on loopback only (127.0.0.1, ::1), not "${addr.hostname}"`,
    );
  }
  return { listen: formatHostPort(addr), ...(typeof exit === "string" ? { exit } : {}) };
}

/** Options for `MeshProxies`. */
export interface MeshProxiesOptions {
  log: Logger;
  /** The running mesh by name, if it runs. */
  runtimeOf(mesh: string): MeshRuntime | undefined;
}

/** The running proxies. Calls for one mesh must not overlap (the API serializes them). */
export class MeshProxies {
  #opts: MeshProxiesOptions;
  #running = new Map<string, { config: ProxyConfig; server: ProxyServer }>();
  #failed = new Map<string, string>();

  constructor(opts: MeshProxiesOptions) {
    this.#opts = opts;
  }

  /**
   * Starts (or moves) the mesh's proxy. Throws `Conflict` (`port_in_use`),
   * `BadRequest` (`address_unavailable`) or `Forbidden`
   * (`port_not_permitted`); the proxy running before stays as it was then.
   */
  async start(mesh: string, config: ProxyConfig): Promise<void> {
    const old = this.#running.get(mesh);
    if (old && old.config.listen === config.listen) {
      old.config = config; // the exit may have changed; the dialer reads it per connection
      return;
    }
    const addr = parseHostPort(config.listen);
    const { log, runtimeOf } = this.#opts;
    const dialer = new MeshDialer({
      mesh,
      log,
      tunnels: () => runtimeOf(mesh)?.proxyTunnels?.() ?? null,
      exit: () => this.#running.get(mesh)?.config.exit,
    });
    const server = new ProxyServer({
      listen: addr,
      mesh,
      log,
      dial: (host, port) => dialer.dial(host, port),
    });
    // The same address: free it first (a failed bind then leaves the proxy off; the caller says so).
    if (old && sameAddress(old.config.listen, config.listen)) await this.stop(mesh);
    try {
      server.listen();
    } catch (err) {
      throw listenError(err, config.listen);
    }
    this.#failed.delete(mesh);
    this.#running.set(mesh, { config, server });
    if (old) await old.server.close();
  }

  /** Starts the stored proxy at agent start; a failure is logged and shown in the status. */
  async resume(mesh: string, config: ProxyConfig): Promise<void> {
    try {
      await this.start(mesh, config);
    } catch (err) {
      this.#failed.set(mesh, errText(err));
      this.#opts.log.warn("proxy not reopened", { mesh, addr: config.listen, err: errText(err) });
    }
  }

  /** Stops the mesh's proxy, closing its connections; nothing if none runs. */
  async stop(mesh: string): Promise<void> {
    this.#failed.delete(mesh);
    const running = this.#running.get(mesh);
    if (!running) return;
    this.#running.delete(mesh);
    await running.server.close();
    this.#opts.log.info("proxy stopped", { mesh, addr: running.config.listen });
  }

  /** The mesh's proxy as the API shows it, given its stored config. */
  status(mesh: string, stored: ProxyConfig | null): ProxyStatus {
    const running = this.#running.get(mesh);
    return {
      enabled: stored !== null,
      listen: stored?.listen ?? null,
      listening: running !== undefined,
      address: running?.server.address ?? null,
      error: running ? null : this.#failed.get(mesh) ?? null,
      connections: running?.server.connections ?? 0,
      ...(running ? { state: running.server.tally.state("The proxy") } : {}),
    };
  }

  /** Stops every proxy. */
  async close(): Promise<void> {
    await Promise.all([...this.#running.keys()].map((m) => this.stop(m)));
  }
}

function sameAddress(a: string, b: string): boolean {
  const x = parseHostPort(a);
  const y = parseHostPort(b);
  return x.port === y.port && x.port !== 0;
}

function listenError(err: unknown, listen: string): unknown {
  if (err instanceof Deno.errors.AddrInUse) {
    return agentError("port_in_use", `Port ${listen} is already in use`, { cause: err });
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return agentError(
      "address_unavailable",
      `Address ${listen} is not an address of this computer`,
      {
        cause: err,
      },
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return agentError("port_not_permitted", `Not permitted to listen on ${listen}`, {
      cause: err,
    });
  }
  return err;
}
