/**
 * A port mapping: a local TCP listener whose every accepted connection is
 * tunneled through the hub to a provider of the mapped service.
 *
 * Providers come from the hub's service list: the mapping's `user` (fixed
 * when the mapping was made, or at its first use if nobody offered the name
 * then, and then reported through `userFixed` so the agent stores it) fixes
 * the pool, so a member who later publishes the same name never joins it,
 * also after a restart; `endpoint` pins one provider.
 * New connections rotate over the pool's online providers; one that refuses
 * or fails to open is skipped for the next, while no byte has flowed (the
 * client connection is not read until a tunnel is open).
 *
 * The data leg is a data link kept from an earlier tunnel when there is one,
 * else a warm TLS connection to the hub's data port (the hub answers with a
 * ticket for it), else the tunnel's HTTP/2 stream.
 */
import type { DataLink } from "@ztm/shared/data_link";
import { Conflict, NotFound, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import {
  checkLinkMessage,
  HUB_PATHS,
  LEG_HEADER,
  type LinkMessage,
  type MeshService,
  type Page,
  TICKET_HEADER,
} from "@ztm/shared/protocol";
import { connLeg, type Leg, splice } from "@ztm/shared/splice";
import type { DataPool } from "./data_pool.ts";
import type { HubLink } from "./hub_link.ts";
import type { PortMapping } from "./runtime.ts";
import type { Tally } from "./tunnel_state.ts";
import { h2Leg, ticketLink } from "./tunnel_legs.ts";

/** How long a mapping reuses the hub's list of providers. */
const PROVIDERS_TTL_MS = 2_000;

/** Options for `PortMap`. */
export interface PortMapOptions {
  mapping: PortMapping;
  link: HubLink;
  pool: DataPool;
  log: Logger;
  mesh: string;
  /** Told the pool user a mapping without one fixed at its first use, to persist it. */
  userFixed?: (mapping: PortMapping, user: string) => void;
  /** Where the mapping's tunnel outcomes and bytes are counted. */
  state?: Tally;
}

/** One listening port mapping. */
export class PortMap {
  #opts: PortMapOptions;
  #listener: Deno.TcpListener | undefined;
  #accepting: Promise<void> | undefined;
  #live = new Set<Deno.Conn>();
  #turn = 0;
  /** The pool's user, when the mapping was made without one (fixed at first use). */
  #user: string | undefined;
  #providers: { list: { endpoint: string; name: string }[]; until: number } | undefined;

  constructor(opts: PortMapOptions) {
    this.#opts = opts;
  }

  /** Binds the listener. Throws Deno's `AddrInUse`, `AddrNotAvailable` or `PermissionDenied`. */
  listen(): Promise<void> {
    const { mapping, log, mesh } = this.#opts;
    this.#listener = Deno.listen({ hostname: mapping.ip, port: mapping.port });
    log.info("port mapping listening", {
      mesh,
      addr: `${mapping.ip}:${mapping.port}`,
      service: mapping.target.service,
    });
    this.#opts.pool.touch();
    this.#accepting = this.#acceptLoop(this.#listener);
    return Promise.resolve();
  }

  /** Closes the listener and every connection it accepted. */
  async close(): Promise<void> {
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    this.#listener = undefined;
    for (const c of this.#live) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    this.#live.clear();
    // The socket is released once the pending accept has ended: only then is the port really closed.
    await this.#accepting;
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#listener !== listener) return; // closed on purpose
        if (err instanceof Deno.errors.BadResource) return;
        this.#opts.log.warn("accept failed", { mesh: this.#opts.mesh, err: errText(err) });
        continue;
      }
      conn.setNoDelay(true);
      this.#live.add(conn);
      this.#accept(conn).finally(() => this.#live.delete(conn));
    }
  }

  async #accept(client: Deno.TcpConn): Promise<void> {
    const { mapping, log, mesh } = this.#opts;
    const service = `${mapping.proto}/${mapping.target.service}`;
    let providers: { endpoint: string; name: string }[];
    try {
      providers = await this.#cachedPool();
    } catch (err) {
      log.warn("tunnel failed", { mesh, service, err: errText(err) });
      this.#opts.state?.failed(err);
      client.close();
      return;
    }
    const start = this.#turn++ % providers.length;
    for (let i = 0; i < providers.length; i++) {
      const p = providers[(start + i) % providers.length];
      if (!this.#live.has(client)) return;
      let leg: Leg;
      let link: DataLink | undefined;
      try {
        ({ leg, link } = await this.open(p.endpoint));
      } catch (err) {
        this.#providers = undefined; // the list may be stale: ask the hub next time
        log.warn("tunnel failed", { mesh, service, endpoint: p.endpoint, err: errText(err) });
        this.#opts.state?.failed(err);
        continue;
      }
      if (!this.#live.has(client)) {
        leg.abort();
        if (link) this.#opts.pool.release(link, "out", false);
        return;
      }
      const local = connLeg(client);
      const { clean } = await splice(this.#opts.state?.track(local, "up") ?? local, leg);
      if (link) this.#opts.pool.release(link, "out", clean);
      return;
    }
    try {
      client.close();
    } catch { /* already closed */ }
  }

  /**
   * Opens a tunnel to `endpoint` and returns its data leg: an idle data link
   * kept from an earlier tunnel (asked with `open`), else a TLS connection to
   * the data port (warm, or dialled while the tunnel is set up) presenting
   * the hub's ticket, or the tunnel's HTTP/2 stream when the data port is
   * unavailable. `link` is the data link under the leg, if any. Public for
   * the proxy (`Mesh.proxyTunnels`), which opens tunnels without listening.
   */
  async open(endpoint: string): Promise<{ leg: Leg; link?: DataLink }> {
    const { mapping, link: hub, pool, log } = this.#opts;
    const kept = pool.takeLink();
    if (kept) {
      const opened = await this.#openOnLink(kept, endpoint);
      if (opened) return { leg: kept.framed(), link: kept };
    }
    const path = HUB_PATHS.tunnel(endpoint, mapping.proto, mapping.target.service);
    const data = pool.connection();
    if (!data) return { leg: h2Leg((await hub.openStream(path)).stream) };
    data.catch(() => {}); // a failed dial is handled where it is awaited
    let opened;
    try {
      opened = await hub.openStream(path, { [LEG_HEADER]: "tls" });
    } catch (err) {
      data.then((c) => c.close(), () => {});
      throw err;
    }
    const ticket = opened.headers[TICKET_HEADER];
    if (typeof ticket !== "string") {
      // The hub chose the HTTP/2 stream after all (it has no data port now).
      data.then((c) => c.close(), () => {});
      return { leg: h2Leg(opened.stream) };
    }
    // End our side of the signalling stream (never reset it: resets count against nghttp2's budget).
    opened.stream.end();
    opened.stream.resume();
    const link = await ticketLink(pool, data, ticket, log);
    return { leg: link.framed(), link };
  }

  /**
   * Asks for the tunnel on a kept link: true once the hub answered `opened`;
   * false when the link turned out dead (then another way is tried). A
   * refusal is thrown as the hub's error, and the link is kept.
   */
  async #openOnLink(link: DataLink, endpoint: string): Promise<boolean> {
    const { mapping, pool } = this.#opts;
    let answer: LinkMessage | null;
    try {
      await link.writeMessage({
        type: "open",
        endpoint,
        proto: mapping.proto,
        name: mapping.target.service,
      });
      answer = await link.readMessage(checkLinkMessage);
    } catch {
      answer = null;
    }
    if (answer?.type === "opened") return true;
    if (answer?.type === "error") {
      pool.release(link, "out", true);
      throw new ZtmError(answer.status, answer.code, answer.message);
    }
    pool.release(link, "out", false);
    return false;
  }

  /**
   * The providers, from a list at most `PROVIDERS_TTL_MS` old: a new
   * connection need not ask the hub first (a failed open drops the list).
   */
  async #cachedPool(): Promise<{ endpoint: string; name: string }[]> {
    const now = Date.now();
    if (this.#providers && this.#providers.until > now) return this.#providers.list;
    const list = await this.#pool();
    this.#providers = { list, until: now + PROVIDERS_TTL_MS };
    return list;
  }

  #fixUser(user: string): void {
    const { mapping, userFixed, log, mesh } = this.#opts;
    this.#user = user;
    try {
      userFixed?.(mapping, user);
    } catch (err) {
      // Still fixed in memory; only a restart before the next use would forget it.
      log.error("pool user not stored", {
        mesh,
        service: mapping.target.service,
        user,
        err: errText(err),
      });
    }
    log.info("pool user fixed", {
      mesh,
      service: `${mapping.proto}/${mapping.target.service}`,
      user,
    });
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
    const user = target.user ?? this.#user;
    if (user) groups = groups.filter((g) => g.user === user);
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
    // A mapping made before anyone offered the service keeps the first user it found.
    if (!user) this.#fixUser(groups[0].user);
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
