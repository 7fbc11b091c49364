/**
 * The provider side of tunnels: when the hub asks this endpoint to accept a
 * tunnel, check the service's access rule for the caller's user, connect to
 * the service's target, and only then open the session stream back to the
 * hub. A refused or failed open is answered on the control stream, so the
 * caller gets a status before any byte flows — and a refused caller never
 * reaches the target.
 */
import net from "node:net";
import { errText, type Logger } from "@ztm/shared/log";
import { HUB_PATHS, type HubMessage } from "@ztm/shared/protocol";
import type { HubLink } from "./hub_link.ts";
import type { LocalService } from "./runtime.ts";
import { splice } from "./splice.ts";

const CONNECT_TIMEOUT_MS = 5_000;

/** True when `user` may use `service` provided by `owner`. */
export function mayUse(service: LocalService, owner: string, user: string): boolean {
  return user === owner || user === "root" || service.users.includes("*") ||
    service.users.includes(user);
}

/** Accepts tunnels for one mesh. */
export class Provider {
  #services: LocalService[] = [];
  #owner: string;
  #link: HubLink;
  #log: Logger;
  #mesh: string;
  #live = new Set<net.Socket>();

  constructor(opts: { owner: string; link: HubLink; log: Logger; mesh: string }) {
    this.#owner = opts.owner;
    this.#link = opts.link;
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
  open(msg: Extract<HubMessage, { type: "open" }>): void {
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
    const socket = net.connect({ host: service.host, port: service.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    socket.setTimeout(CONNECT_TIMEOUT_MS);
    socket.pause();
    socket.once("timeout", () => socket.destroy(new Error("connect timed out")));
    let connected = false;
    socket.on("error", (err) => {
      if (!connected) {
        refuse(
          502,
          "target_unreachable",
          `Service ${label} target ${service.host}:${service.port} is unreachable: ${errText(err)}`,
        );
      }
    });
    socket.once("connect", async () => {
      connected = true;
      socket.setTimeout(0);
      this.#live.add(socket);
      socket.once("close", () => this.#live.delete(socket));
      try {
        const stream = await this.#link.openStream(HUB_PATHS.session(sid));
        this.#log.info("tunnel accepted", {
          mesh: this.#mesh,
          service: label,
          user: from.user,
          endpoint: from.endpoint,
        });
        await splice(socket, stream);
      } catch (err) {
        this.#log.info("tunnel session failed", {
          mesh: this.#mesh,
          service: label,
          err: errText(err),
        });
        socket.destroy();
      }
    });
  }

  /** Closes every live target connection. */
  close(): void {
    for (const s of this.#live) s.destroy();
  }
}
