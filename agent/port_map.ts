/**
 * A port mapping: a local TCP listener whose every accepted connection is
 * tunneled through the hub to a provider of the mapped service, or for a
 * `udp` mapping a local UDP socket whose client addresses each get a
 * flow, tunneled the same way (`udp_map.ts`).
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
 * Each tunnel runs end to end to the provider (`peer/dialer.ts`): on a pooled
 * pair connection when one is idle, else on a fresh one for which the hub
 * hands out a ticket. The provider must hold the certificate of the pool's
 * user, so a hub cannot splice a client to anyone else.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { connLeg, splice } from "@ztm/shared/splice";
import type { HubSet } from "./hubs.ts";
import type { OpenTunnel, PairDialer } from "./peer/dialer.ts";
import type { PortMapping } from "./runtime.ts";
import type { Tally } from "./tunnel_state.ts";
import { DEFAULT_UDP_FLOWS, DEFAULT_UDP_IDLE_MS, UdpMap } from "./udp_map.ts";

/** Pair failures on the way (no answer from the provider itself): worth one more try. */
const RETRYABLE_CODES = new Set(["pair_failed", "peer_closed", "data_port_unreachable"]);

/** Whether a failed open is worth one more try at the same provider (the proxy asks too). */
export function retryable(err: unknown): boolean {
  return err instanceof ZtmError ? RETRYABLE_CODES.has(err.code) : true;
}

/** How long a mapping reuses the hub's list of providers. */
const PROVIDERS_TTL_MS = 2_000;

/** A provider of the mapped service, and the user whose certificate it must hold. */
interface Provider {
  endpoint: string;
  name: string;
  user: string;
}

/** Options for `PortMap`. */
export interface PortMapOptions {
  mapping: PortMapping;
  link: HubSet;
  dialer: PairDialer;
  log: Logger;
  mesh: string;
  /** Told the pool user a mapping without one fixed at its first use, to persist it. */
  userFixed?: (mapping: PortMapping, user: string) => void;
  /** Where the mapping's tunnel outcomes and bytes are counted. */
  state?: Tally;
  /** UDP mappings: a flow's idle timeout (default `DEFAULT_UDP_IDLE_MS`). */
  udpIdleMs?: number;
  /** UDP mappings: most flows at once (default `DEFAULT_UDP_FLOWS`). */
  udpFlows?: number;
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
  #providers: { list: Provider[]; until: number } | undefined;
  #udp: UdpMap | undefined;

  constructor(opts: PortMapOptions) {
    this.#opts = opts;
  }

  /** Binds the listener. Throws Deno's `AddrInUse`, `AddrNotAvailable` or `PermissionDenied`. */
  listen(): Promise<void> {
    const { mapping, log, mesh } = this.#opts;
    if (mapping.proto === "udp") {
      const idleMs = this.#opts.udpIdleMs ?? DEFAULT_UDP_IDLE_MS;
      this.#udp = new UdpMap({
        ip: mapping.ip,
        port: mapping.port,
        idleMs,
        maxFlows: this.#opts.udpFlows ?? DEFAULT_UDP_FLOWS,
        log,
        mesh,
        label: `udp/${mapping.target.service}`,
        open: (alive) => this.#openAny(alive, idleMs),
        state: this.#opts.state,
      });
      this.#udp.listen();
      log.info("port mapping listening", {
        mesh,
        addr: `udp ${mapping.ip}:${mapping.port}`,
        service: mapping.target.service,
      });
      return Promise.resolve();
    }
    this.#listener = Deno.listen({ hostname: mapping.ip, port: mapping.port });
    log.info("port mapping listening", {
      mesh,
      addr: `${mapping.ip}:${mapping.port}`,
      service: mapping.target.service,
    });
    this.#accepting = this.#acceptLoop(this.#listener);
    return Promise.resolve();
  }

  /** Closes the listener and every connection it accepted. */
  async close(): Promise<void> {
    await this.#udp?.close();
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
    let tunnel: OpenTunnel;
    try {
      tunnel = await this.#openAny(() => this.#live.has(client));
    } catch {
      try {
        client.close();
      } catch { /* already closed */ }
      return;
    }
    if (!this.#live.has(client)) {
      tunnel.leg.abort();
      tunnel.release(false);
      return;
    }
    const local = connLeg(client);
    const { clean } = await splice(this.#opts.state?.track(local, "up") ?? local, tunnel.leg);
    tunnel.release(clean);
  }

  /**
   * Opens a tunnel (a UDP flow when `idleMs` is given) to the pool's next
   * provider, skipping to the next one that refuses or fails while `alive()`
   * (the client still wants it); throws the last failure, or `client_gone` (503) when the
   * client left. Each failure is logged and counted.
   */
  async #openAny(alive: () => boolean, idleMs?: number): Promise<OpenTunnel> {
    const { mapping, log, mesh } = this.#opts;
    const service = `${mapping.proto}/${mapping.target.service}`;
    let providers: Provider[];
    try {
      providers = await this.#cachedPool();
    } catch (err) {
      log.warn("tunnel failed", { mesh, service, err: errText(err) });
      this.#opts.state?.failed(err);
      throw err;
    }
    const start = this.#turn++ % providers.length;
    let last: unknown = agentError("client_gone", "The client left");
    for (let i = 0; i < providers.length; i++) {
      const p = providers[(start + i) % providers.length];
      if (!alive()) break;
      try {
        return await this.#open(p, idleMs).catch((err) => {
          // A fresh pair that broke on its way (a loaded peer past the handshake deadline, a
          // data connection the hub shed) is tried once more before the next provider.
          if (!retryable(err) || !alive()) throw err;
          log.info("tunnel retried", { mesh, service, endpoint: p.endpoint, err: errText(err) });
          return this.#open(p, idleMs);
        });
      } catch (err) {
        last = err;
        this.#providers = undefined; // the list may be stale: ask the hub next time
        log.warn("tunnel failed", { mesh, service, endpoint: p.endpoint, err: errText(err) });
        this.#opts.state?.failed(err);
      }
    }
    throw last;
  }

  /** Opens a tunnel to provider `p`, end to end (a pooled pair, or a fresh one ticketed by the hub). */
  #open(p: Provider, idleMs?: number): Promise<OpenTunnel> {
    const { mapping, link, dialer } = this.#opts;
    const service = mapping.target.service;
    return link.tunnel(
      HUB_PATHS.tunnel(p.endpoint, mapping.proto, service),
      (ticket, data) =>
        dialer.open(
          { endpoint: p.endpoint, user: p.user },
          mapping.proto === "udp"
            ? { proto: "udp", name: service, idleMs }
            : { proto: mapping.proto, name: service },
          ticket,
          data,
        ),
    );
  }

  /**
   * The providers, from a list at most `PROVIDERS_TTL_MS` old: a new
   * connection need not ask the hub first (a failed open drops the list).
   */
  async #cachedPool(): Promise<Provider[]> {
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
  async #pool(): Promise<Provider[]> {
    const { mapping, link } = this.#opts;
    const target = mapping.target;
    const page = await link.services(
      `${HUB_PATHS.services}?q=${encodeURIComponent(target.service)}&limit=500`,
    );
    let groups = page.items.filter((s) => s.proto === mapping.proto && s.name === target.service);
    const user = target.user ?? this.#user;
    if (user) groups = groups.filter((g) => g.user === user);
    if (groups.length === 0) {
      throw agentError(
        "unknown_service",
        `No endpoint offers ${mapping.proto}/${target.service}`,
      );
    }
    if (groups.length > 1) {
      throw agentError(
        "ambiguous_service",
        `Several users offer ${mapping.proto}/${target.service}; name one`,
      );
    }
    // A mapping made before anyone offered the service keeps the first user it found.
    if (!user) this.#fixUser(groups[0].user);
    const owner = groups[0].user;
    let providers = groups[0].providers.filter((p) => p.online).map((p) => ({ ...p, user: owner }));
    if (target.endpoint) {
      const pin = target.endpoint;
      providers = providers.filter((p) => p.endpoint === pin || p.name === pin);
    }
    if (providers.length === 0) {
      throw agentError(
        "no_provider_online",
        `No provider of ${mapping.proto}/${target.service} is online`,
      );
    }
    return providers;
  }
}
