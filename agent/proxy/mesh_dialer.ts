/**
 * From a host name to an open tunnel: the proxy's only contact with the data
 * path. A `.mesh` name is parsed and resolved (`names.ts`) against the
 * mesh's service listing, then a tunnel is opened to one of its online
 * providers, rotating over them as a port mapping does and skipping one
 * that refuses or fails while no byte has flowed.
 *
 * The data path comes in as `ProxyTunnels`, two calls the mesh runtime
 * provides: the listing (the same hub query port mappings use for their
 * pools) and `openTunnel` to one provider. Every tunnel gets the provider's
 * own access check, so a name the caller may not use fails there.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { EXIT_SERVICE } from "@ztm/shared/peer_protocol";
import { errText, type Logger } from "@ztm/shared/log";
import type { MeshService } from "@ztm/shared/protocol";
import type { Leg } from "@ztm/shared/splice";
import { type MeshName, parseMeshName, resolveMeshName } from "./names.ts";

/** What the proxy needs from the data path of one mesh. */
export interface ProxyTunnels {
  /** The mesh's services named like `name` (any user), as the hub lists them. */
  services(name: string): Promise<MeshService[]>;
  /**
   * Opens a tunnel to `tcp/service` on provider `endpoint`, whose user is
   * `user`. Throws the hub's or the provider's refusal as a `ZtmError`.
   */
  openTunnel(target: TunnelTarget): Promise<OpenedTunnel>;
}

/** One provider's service, as `openTunnel` is asked for it. */
export interface TunnelTarget {
  proto: "tcp";
  service: string;
  endpoint: string;
  user: string;
  /** For an exit (`tcp/exit`): where the exit connects. */
  to?: { host: string; port: number };
}

/** An open tunnel: its data leg, and `release` once the splice ended (clean or not). */
export interface OpenedTunnel {
  leg: Leg;
  release(clean: boolean): void;
}

/** A tunnel the dialer opened, with what it reached. */
export interface DialedTunnel extends OpenedTunnel {
  target: TunnelTarget;
}

/** How long a resolved listing is reused (as a port mapping reuses its pool). */
const LISTING_TTL_MS = 2_000;
/** Listings kept at once (one per name asked recently). */
const MAX_CACHED_NAMES = 256;

/** Options for `MeshDialer`. */
export interface MeshDialerOptions {
  mesh: string;
  /** The current data path; null while the mesh is not running. */
  tunnels: () => ProxyTunnels | null;
  log: Logger;
  /** The endpoint (name or id) whose exit names outside the mesh go through; none: refused. */
  exit?: () => string | undefined;
}

/** Opens tunnels by name. Methods may be called concurrently. */
export class MeshDialer {
  #opts: MeshDialerOptions;
  #turn = 0;
  #listings = new Map<string, { list: MeshService[]; until: number }>();

  constructor(opts: MeshDialerOptions) {
    this.#opts = opts;
  }

  /**
   * Opens a tunnel to `host` (the port is not used: the service decides).
   * Throws `ZtmError`: `BadRequest` for a malformed `.mesh` name,
   * `NotFound` for an unknown one or a name outside the mesh, `Conflict`
   * when several users offer it, `ServiceUnavailable` when no provider is
   * online, or the last provider's refusal (`Forbidden` when the caller may
   * not use it).
   */
  async dial(host: string, port = 0): Promise<DialedTunnel> {
    const name = parseMeshName(host);
    const exit = name ? undefined : this.#opts.exit?.();
    if (!name && !exit) {
      throw agentError(
        "not_a_mesh_name",
        `"${host.slice(0, 100)}" is not a mesh name (SERVICE.mesh) and this proxy has no exit`,
      );
    }
    const tunnels = this.#opts.tunnels();
    if (!tunnels) {
      throw agentError("mesh_not_running", `Mesh "${this.#opts.mesh}" is not running`);
    }
    if (!name) return await this.#dialExit(tunnels, exit!, host, port);
    const resolved = resolveMeshName(name, await this.#listing(tunnels, name));
    const providers = resolved.providers;
    const start = this.#turn++ % providers.length;
    let last: unknown;
    for (let i = 0; i < providers.length; i++) {
      const p = providers[(start + i) % providers.length];
      const target: TunnelTarget = {
        proto: "tcp",
        service: resolved.service,
        endpoint: p.endpoint,
        user: resolved.user,
      };
      try {
        return { ...(await tunnels.openTunnel(target)), target };
      } catch (err) {
        last = err;
        this.#listings.delete(name.service.toLowerCase()); // may be stale: ask the hub next time
        this.#opts.log.debug("proxy tunnel failed", {
          mesh: this.#opts.mesh,
          service: `tcp/${resolved.service}`,
          endpoint: p.endpoint,
          err: errText(err),
        });
        // A refusal of the caller is the same at every provider of one user's service.
        if (err instanceof ZtmError && err.status === 403) break;
      }
    }
    throw last;
  }

  /** A tunnel through the exit of endpoint `exit` (name or id) to `host:port`; the exit checks it. */
  async #dialExit(
    tunnels: ProxyTunnels,
    exit: string,
    host: string,
    port: number,
  ): Promise<DialedTunnel> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw agentError("bad_exit_destination", `Port ${port} cannot go through an exit`);
    }
    const offers = (await tunnels.services(EXIT_SERVICE)).filter((s) =>
      s.proto === "tcp" && s.name === EXIT_SERVICE
    );
    const provider = offers.flatMap((s) => s.providers.map((p) => ({ ...p, user: s.user })))
      .find((p) => p.endpoint === exit || p.name === exit);
    if (!provider) {
      throw agentError("no_exit", `Endpoint "${exit.slice(0, 64)}" offers no exit in this mesh`);
    }
    if (!provider.online) {
      throw agentError("exit_offline", `The exit on "${exit.slice(0, 64)}" is offline`);
    }
    const target: TunnelTarget = {
      proto: "tcp",
      service: EXIT_SERVICE,
      endpoint: provider.endpoint,
      user: provider.user,
      to: { host, port },
    };
    return { ...(await tunnels.openTunnel(target)), target };
  }

  async #listing(tunnels: ProxyTunnels, name: MeshName): Promise<MeshService[]> {
    const key = name.service.toLowerCase();
    const now = Date.now();
    const cached = this.#listings.get(key);
    if (cached && cached.until > now) return cached.list;
    const list = await tunnels.services(name.service);
    if (this.#listings.size >= MAX_CACHED_NAMES) this.#listings.clear();
    this.#listings.set(key, { list, until: now + LISTING_TTL_MS });
    return list;
  }
}
