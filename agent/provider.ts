/**
 * The provider side of tunnels: when the hub asks this endpoint to accept a
 * tunnel, check the service's access rule for the caller's user, connect to
 * the service's target, and only then attach a data leg (a warm TLS
 * connection with the hub's ticket, else an HTTP/2 session stream). A refused
 * or failed open is answered on the control stream, so the caller gets a
 * status before any byte flows — and a refused caller never reaches the target.
 */
import { errText, type Logger } from "@ztm/shared/log";
import { HUB_PATHS, type HubMessage } from "@ztm/shared/protocol";
import { connLeg, type Leg, splice } from "@ztm/shared/splice";
import type { DataPool } from "./data_pool.ts";
import type { HubLink } from "./hub_link.ts";
import type { LocalService } from "./runtime.ts";
import { h2Leg, ticketLeg } from "./tunnel_legs.ts";

const CONNECT_TIMEOUT_MS = 5_000;

/** True when `user` may use `service` provided by `owner`. */
export function mayUse(service: LocalService, owner: string, user: string): boolean {
  return user === owner || user === "root" || service.users.includes("*") ||
    service.users.includes(user);
}

/** Connects to `host:port` with a deadline; closes a late connection. */
async function connectTarget(host: string, port: number): Promise<Deno.TcpConn> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = Deno.connect({ hostname: host, port });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("connect timed out")), CONNECT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([attempt, timeout]);
  } catch (err) {
    attempt.then((c) => c.close(), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
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
  #live = new Set<Deno.Conn>();

  constructor(opts: { owner: string; link: HubLink; pool: DataPool; log: Logger; mesh: string }) {
    this.#owner = opts.owner;
    this.#link = opts.link;
    this.#pool = opts.pool;
    this.#log = opts.log;
    this.#mesh = opts.mesh;
  }

  /** Replaces the services this endpoint provides. */
  setServices(services: LocalService[]): void {
    this.#services = services;
  }

  /** Number of live tunneled connections to targets. */
  get liveConnections(): number {
    return this.#live.size;
  }

  /** Handles one `open` request from the hub. Never throws. */
  async open(msg: Extract<HubMessage, { type: "open" }>): Promise<void> {
    const { sid, service: want, from } = msg;
    const label = `${want.proto}/${want.name}`;
    const refuse = (status: number, code: string, message: string) => {
      this.#log.info("tunnel refused", {
        mesh: this.#mesh,
        service: label,
        user: from.user,
        status,
        err: message,
      });
      this.#link.send({ type: "refuse", sid, status, code, message });
    };
    const service = this.#services.find((s) => s.proto === want.proto && s.name === want.name);
    if (!service) return refuse(404, "unknown_service", `This endpoint has no service ${label}`);
    if (!mayUse(service, this.#owner, from.user)) {
      return refuse(403, "access_denied", `User "${from.user}" may not use service ${label}`);
    }
    // Dial the data port (unless a warm connection waits) while connecting to the target.
    const data = msg.ticket ? this.#pool.connection() : undefined;
    data?.catch(() => {}); // handled where awaited
    let target: Deno.TcpConn;
    try {
      target = await connectTarget(service.host, service.port);
    } catch (err) {
      data?.then((c) => c.close(), () => {});
      return refuse(
        502,
        "target_unreachable",
        `Service ${label} target ${service.host}:${service.port} is unreachable: ${errText(err)}`,
      );
    }
    target.setNoDelay(true);
    this.#live.add(target);
    try {
      let leg: Leg | undefined;
      if (data && msg.ticket) {
        leg = await ticketLeg(this.#pool, data, msg.ticket, this.#log).catch(() => undefined);
      }
      // No data port (or it failed): the HTTP/2 session stream, which voids the ticket.
      leg ??= h2Leg((await this.#link.openStream(HUB_PATHS.session(sid))).stream);
      this.#log.info("tunnel accepted", {
        mesh: this.#mesh,
        service: label,
        user: from.user,
        endpoint: from.endpoint,
      });
      await splice(connLeg(target), leg);
    } catch (err) {
      this.#log.info("tunnel session failed", {
        mesh: this.#mesh,
        service: label,
        err: errText(err),
      });
      try {
        target.close();
      } catch { /* already closed */ }
    } finally {
      this.#live.delete(target);
    }
  }

  /** Closes every live target connection. */
  close(): void {
    for (const c of this.#live) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    this.#live.clear();
  }
}
