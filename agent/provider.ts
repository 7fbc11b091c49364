/**
 * The provider side of tunnels: when the hub asks this endpoint to accept a
 * tunnel — down a parked data link, or over the control stream — check the
 * service's access rule for the caller's user, connect to the service's
 * target, and only then attach a data leg (that link; or a data connection
 * with the hub's ticket, else an HTTP/2 session stream). A refused or failed
 * open is answered where it was asked, so the caller gets a status before any
 * byte flows — and a refused caller never reaches the target.
 */
import type { DataLink } from "@ztm/shared/data_link";
import { errText, type Logger } from "@ztm/shared/log";
import {
  HUB_PATHS,
  type HubMessage,
  type LinkMessage,
  type TunnelCaller,
} from "@ztm/shared/protocol";
import { connLeg, type Leg, splice, type SpliceResult } from "@ztm/shared/splice";
import type { DataPool } from "./data_pool.ts";
import type { HubLink } from "./hub_link.ts";
import type { LocalService } from "./runtime.ts";
import type { TunnelStates } from "./tunnel_state.ts";
import { h2Leg, ticketLink } from "./tunnel_legs.ts";

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Refusals (unknown service, access denied) one caller user may cause per
 * window; beyond that the provider answers 429 `too_many_refusals` without
 * checking anything and without a log line each (one counted line when the
 * limit trips). The user is the one the hub names in the request.
 */
export const REFUSAL_LIMIT = 20;
export const REFUSAL_WINDOW_MS = 10_000;
/** Users remembered at once; beyond that expired windows are forgotten. */
const MAX_REFUSING_USERS = 1_000;

/** Counts refusals per caller user in fixed windows (from the first refusal). Single-threaded. */
class RefusalLimiter {
  #users = new Map<string, { start: number; count: number; muted: number }>();

  /** True (and counted as muted) when `user` is over the limit in its current window. */
  muted(user: string): boolean {
    const w = this.#users.get(user);
    if (!w || Date.now() - w.start >= REFUSAL_WINDOW_MS || w.count < REFUSAL_LIMIT) return false;
    w.muted++;
    return true;
  }

  /** Counts one refusal of `user`; returns the window's count then. */
  count(user: string): number {
    const now = Date.now();
    let w = this.#users.get(user);
    if (!w || now - w.start >= REFUSAL_WINDOW_MS) {
      if (!w && this.#users.size >= MAX_REFUSING_USERS) {
        for (const [u, old] of this.#users) {
          if (now - old.start >= REFUSAL_WINDOW_MS) this.#users.delete(u);
        }
        if (this.#users.size >= MAX_REFUSING_USERS) this.#users.clear();
      }
      w = { start: now, count: 0, muted: 0 };
      this.#users.set(user, w);
    }
    return ++w.count;
  }
}

/** True when `user` may use `service` provided by `owner`. */
export function mayUse(service: LocalService, owner: string, user: string): boolean {
  return user === owner || user === "root" || service.users.includes("*") ||
    service.users.includes(user);
}

/**
 * Connects to `host:port` with a deadline. The attempt is aborted at the
 * deadline, not left to the kernel: a black-holed address would otherwise
 * hold a descriptor per attempt for the ~2 minutes of SYN retries.
 */
async function connectTarget(host: string, port: number): Promise<Deno.TcpConn> {
  try {
    return await Deno.connect({
      hostname: host,
      port,
      signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "TimeoutError") {
      throw new Error("connect timed out");
    }
    throw err;
  }
}

/** Accepts tunnels for one mesh. */
export class Provider {
  #services: LocalService[] = [];
  #owner: string;
  #link: HubLink;
  #pool: DataPool;
  #log: Logger;
  #mesh: string;
  /** Live target connections, with the service and the caller's user they serve. */
  #live = new Map<Deno.TcpConn, { proto: string; name: string; user: string }>();
  #refusals = new RefusalLimiter();

  /** Where accepted and refused tunnels are counted, per service (see `tunnel_state.ts`). */
  states: TunnelStates | undefined;

  constructor(opts: { owner: string; link: HubLink; pool: DataPool; log: Logger; mesh: string }) {
    this.#owner = opts.owner;
    this.#link = opts.link;
    this.#pool = opts.pool;
    this.#log = opts.log;
    this.#mesh = opts.mesh;
  }

  /**
   * Replaces the services this endpoint provides. New rules apply to new
   * connections at once; a `strict` service also closes the live connections
   * of users it no longer allows (and a deleted strict service all of its own).
   */
  setServices(services: LocalService[]): void {
    const before = this.#services;
    this.#services = services;
    const find = (list: LocalService[], c: { proto: string; name: string }) =>
      list.find((s) => s.proto === c.proto && s.name === c.name);
    for (const [conn, c] of this.#live) {
      const now = find(services, c);
      const cut = now
        ? now.strict && !mayUse(now, this.#owner, c.user)
        : find(before, c)?.strict === true;
      if (!cut) continue;
      this.#log.info("tunnel closed: access withdrawn", {
        mesh: this.#mesh,
        service: `${c.proto}/${c.name}`,
        user: c.user,
      });
      this.#live.delete(conn);
      closeQuietly(conn);
    }
  }

  /** Number of live tunneled connections to targets. */
  get liveConnections(): number {
    return this.#live.size;
  }

  /**
   * Handles one `open` request from the hub's control stream: the data leg
   * is a data connection presenting the ticket, else an HTTP/2 session
   * stream. Never throws.
   */
  async open(msg: Extract<HubMessage, { type: "open" }>): Promise<void> {
    const { sid } = msg;
    const refuse = (status: number, code: string, message: string) =>
      this.#link.send({ type: "refuse", sid, status, code, message });
    // Access first: a refused caller costs no data-port dial and no target dial.
    const service = this.#check(msg, refuse);
    if (!service) return;
    // Dial the data port (unless a warm connection waits) while connecting to the target.
    const data = msg.ticket ? this.#pool.connection() : undefined;
    data?.catch(() => {}); // handled where awaited
    const target = await this.#connect(msg, service, (status, code, message) => {
      data?.then((c) => c.close(), () => {});
      refuse(status, code, message);
    });
    if (!target) return;
    let link: DataLink | undefined;
    try {
      if (data && msg.ticket) {
        link = await ticketLink(this.#pool, data, msg.ticket, this.#log).catch(() => undefined);
      }
      // No data port (or it failed): the HTTP/2 session stream, which voids the ticket.
      const leg = link?.framed() ??
        h2Leg((await this.#link.openStream(HUB_PATHS.session(sid))).stream);
      const { clean } = await this.#relay(msg, target, leg);
      if (link) this.#pool.release(link, "in", clean);
    } catch (err) {
      this.#log.info("tunnel session failed", {
        mesh: this.#mesh,
        service: `${msg.service.proto}/${msg.service.name}`,
        err: errText(err),
      });
      if (link) this.#pool.release(link, "in", false);
      closeQuietly(target);
    }
  }

  /**
   * Handles a tunnel the hub sent down a parked data link: refuses on the
   * link, or accepts and relays. Resolves true when the link may carry
   * another tunnel.
   */
  async incoming(
    msg: Extract<LinkMessage, { type: "incoming" }>,
    link: DataLink,
  ): Promise<boolean> {
    let refusal: Promise<void> | undefined;
    const refuse = (status: number, code: string, message: string) => {
      refusal = link.writeMessage({ type: "refuse", sid: msg.sid, status, code, message });
    };
    const service = this.#check(msg, refuse);
    const target = service && await this.#connect(msg, service, refuse);
    if (!target) {
      await refusal;
      return true;
    }
    try {
      await link.writeMessage({ type: "accept", sid: msg.sid });
    } catch {
      closeQuietly(target);
      return false;
    }
    return (await this.#relay(msg, target, link.framed())).clean;
  }

  /**
   * Checks the caller's access (cheap, synchronous: nothing is dialled
   * before it); on refusal logs it, calls `refuse` and returns undefined. A
   * user over the refusal limit gets 429 without any check or log line.
   */
  #check(
    msg: { service: { proto: string; name: string }; from: TunnelCaller },
    refuse: (status: number, code: string, message: string) => void,
  ): LocalService | undefined {
    const { service: want, from } = msg;
    const label = `${want.proto}/${want.name}`;
    if (this.#refusals.muted(from.user)) {
      refuse(
        429,
        "too_many_refusals",
        `User "${from.user}" was refused too often; try again in ${REFUSAL_WINDOW_MS / 1000} s`,
      );
      return undefined;
    }
    const deny = (status: number, code: string, message: string) => {
      const count = this.#refusals.count(from.user);
      if (count <= REFUSAL_LIMIT) {
        this.#log.info("tunnel refused", {
          mesh: this.#mesh,
          service: label,
          user: from.user,
          status,
          err: message,
        });
      }
      if (count === REFUSAL_LIMIT) {
        this.#log.warn("tunnel refusals limited", {
          mesh: this.#mesh,
          user: from.user,
          count,
        });
      }
      // Only for services this endpoint has: callers must not grow the table with made-up names.
      if (status !== 404) this.states?.service(want).refused(code, message);
      refuse(status, code, message);
      return undefined;
    };
    const service = this.#services.find((s) => s.proto === want.proto && s.name === want.name);
    if (!service) return deny(404, "unknown_service", `This endpoint has no service ${label}`);
    if (!mayUse(service, this.#owner, from.user)) {
      return deny(403, "access_denied", `User "${from.user}" may not use service ${label}`);
    }
    return service;
  }

  /**
   * Connects to the (already checked) service's target; on failure logs it,
   * calls `refuse` and resolves undefined.
   */
  async #connect(
    msg: { service: { proto: string; name: string }; from: TunnelCaller },
    service: LocalService,
    refuse: (status: number, code: string, message: string) => void,
  ): Promise<Deno.TcpConn | undefined> {
    const label = `${msg.service.proto}/${msg.service.name}`;
    try {
      const target = await connectTarget(service.host, service.port);
      target.setNoDelay(true);
      return target;
    } catch (err) {
      const message = `Service ${label} target ${service.host}:${service.port} is unreachable: ${
        errText(err)
      }`;
      this.#log.info("tunnel refused", {
        mesh: this.#mesh,
        service: label,
        user: msg.from.user,
        status: 502,
        err: message,
      });
      this.states?.service(msg.service).refused("target_unreachable", message);
      refuse(502, "target_unreachable", message);
      return undefined;
    }
  }

  /** Splices the target connection with the tunnel's data leg until both directions end. */
  async #relay(
    msg: { service: { proto: string; name: string }; from: TunnelCaller },
    target: Deno.TcpConn,
    leg: Leg,
  ): Promise<SpliceResult> {
    this.#log.info("tunnel accepted", {
      mesh: this.#mesh,
      service: `${msg.service.proto}/${msg.service.name}`,
      user: msg.from.user,
      endpoint: msg.from.endpoint,
    });
    this.#live.set(target, { ...msg.service, user: msg.from.user });
    try {
      const local = connLeg(target);
      return await splice(this.states?.service(msg.service).track(local, "down") ?? local, leg);
    } finally {
      this.#live.delete(target);
    }
  }

  /** Closes every live target connection. */
  close(): void {
    for (const c of this.#live.keys()) closeQuietly(c);
    this.#live.clear();
  }
}
