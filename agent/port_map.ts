/**
 * A port mapping: a local TCP listener whose every accepted connection is
 * tunneled through the hub to a provider of the mapped service.
 *
 * Providers come from the hub's service list: the mapping's `user` (or the
 * only user offering that name) fixes the pool, `endpoint` pins one provider.
 * New connections rotate over the pool's online providers; one that refuses
 * or fails to open is skipped for the next, while no byte has flowed (the
 * client socket stays paused until a tunnel is open).
 */
import net from "node:net";
import { Conflict, NotFound, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { HUB_PATHS, type MeshService, type Page } from "@ztm/shared/protocol";
import type { HubLink } from "./hub_link.ts";
import type { PortMapping } from "./runtime.ts";
import { splice } from "./splice.ts";

/** Options for `PortMap`. */
export interface PortMapOptions {
  mapping: PortMapping;
  link: HubLink;
  log: Logger;
  mesh: string;
}

/** One listening port mapping. */
export class PortMap {
  #opts: PortMapOptions;
  #server: net.Server | undefined;
  #live = new Set<net.Socket>();
  #turn = 0;

  constructor(opts: PortMapOptions) {
    this.#opts = opts;
  }

  /** `ip/proto/port` of the mapping. */
  get key(): string {
    const m = this.#opts.mapping;
    return `${m.ip}/${m.proto}/${m.port}`;
  }

  /** Binds the listener. Throws `Conflict` (`port_in_use`) or a 400 for an address not on this host. */
  listen(): Promise<void> {
    const { mapping, log, mesh } = this.#opts;
    const server = net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      (socket) => this.#accept(socket),
    );
    return new Promise((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EADDRINUSE") {
          reject(
            new Conflict("port_in_use", `Address ${mapping.ip}:${mapping.port} is already in use`),
          );
        } else if (err.code === "EADDRNOTAVAIL") {
          reject(
            new ZtmError(400, "address_unavailable", `Address ${mapping.ip} is not on this host`),
          );
        } else {
          reject(
            new ZtmError(
              400,
              "listen_failed",
              `Cannot listen on ${mapping.ip}:${mapping.port}: ${errText(err)}`,
            ),
          );
        }
      });
      server.listen({ host: mapping.ip, port: mapping.port, exclusive: true }, () => {
        server.removeAllListeners("error");
        server.on("error", (err) => log.warn("listener error", { mesh, err: errText(err) }));
        this.#server = server;
        log.info("port mapping listening", {
          mesh,
          addr: `${mapping.ip}:${mapping.port}`,
          service: mapping.target.service,
        });
        resolve();
      });
    });
  }

  /** Closes the listener and every connection it accepted. */
  close(): Promise<void> {
    for (const s of this.#live) s.destroy();
    const server = this.#server;
    this.#server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  async #accept(socket: net.Socket): Promise<void> {
    const { mapping, link, log, mesh } = this.#opts;
    this.#live.add(socket);
    socket.on("close", () => this.#live.delete(socket));
    socket.on("error", () => {});
    socket.setNoDelay(true);
    const service = `${mapping.proto}/${mapping.target.service}`;
    let providers: { endpoint: string; name: string }[];
    try {
      providers = await this.#pool();
    } catch (err) {
      log.warn("tunnel failed", { mesh, service, err: errText(err) });
      socket.destroy();
      return;
    }
    const start = this.#turn++ % providers.length;
    for (let i = 0; i < providers.length; i++) {
      const p = providers[(start + i) % providers.length];
      if (socket.destroyed) return;
      try {
        const stream = await link.openStream(
          HUB_PATHS.tunnel(p.endpoint, mapping.proto, mapping.target.service),
        );
        if (socket.destroyed) {
          stream.end();
          return;
        }
        await splice(socket, stream);
        return;
      } catch (err) {
        log.warn("tunnel failed", { mesh, service, endpoint: p.endpoint, err: errText(err) });
      }
    }
    socket.destroy();
  }

  /** The online providers this mapping may use, in a stable order. */
  async #pool(): Promise<{ endpoint: string; name: string }[]> {
    const { mapping, link } = this.#opts;
    const target = mapping.target;
    const page = await link.request<Page<MeshService>>(
      "GET",
      `${HUB_PATHS.services}?q=${encodeURIComponent(target.service)}&limit=500`,
    );
    let groups = page.items.filter((s) => s.proto === mapping.proto && s.name === target.service);
    if (target.user) groups = groups.filter((g) => g.user === target.user);
    if (groups.length === 0) {
      throw new NotFound(
        "unknown_service",
        `No endpoint offers ${mapping.proto}/${target.service}`,
      );
    }
    if (groups.length > 1) {
      throw new Conflict(
        "ambiguous_service",
        `Several users offer ${mapping.proto}/${target.service}; name one`,
      );
    }
    let providers = groups[0].providers.filter((p) => p.online);
    if (target.endpoint) {
      const pin = target.endpoint;
      providers = providers.filter((p) => p.endpoint === pin || p.name === pin);
    }
    if (providers.length === 0) {
      throw new ServiceUnavailable(
        "no_provider_online",
        `No provider of ${mapping.proto}/${target.service} is online`,
      );
    }
    return providers;
  }
}
