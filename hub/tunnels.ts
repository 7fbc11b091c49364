/**
 * Tunnel pairing on the hub (the control half of the data path).
 *
 * A caller asks for `proto/name` on an endpoint; the provider is told over
 * its control stream (`open`, with a ticket for the data port) and attaches
 * its leg — an HTTP/2 session stream, or a warm TLS connection presenting the
 * ticket — or refuses. Only then does the caller get its answer: 200 and its
 * HTTP/2 stream becomes its leg, or (when it asked for `ztm-leg: tls`) 200
 * with a caller ticket, which it presents on its own warm TLS connection.
 * Then `relay()` joins the two legs. Tunnels of a revoked certificate are
 * torn down with their sessions' serials.
 */
import type { ServerHttp2Stream } from "node:http2";
import {
  Forbidden,
  GatewayTimeout,
  NotFound,
  ServiceUnavailable,
  ZtmError,
} from "@ztm/shared/errors";
import type { Logger } from "@ztm/shared/log";
import { OPEN_TIMEOUT_MS, type ServiceProto, TICKET_HEADER } from "@ztm/shared/protocol";
import type { Registry } from "./registry.ts";
import { abortLeg, joinLegs, relay, type TunnelLeg } from "./relay.ts";
import type { TicketGrant, Tickets } from "./tickets.ts";
import { respondError } from "./respond.ts";

/** Who is calling, as admitted. */
export interface TunnelParty {
  endpoint: string;
  user: string;
  serial: string;
  /** The caller's HTTP/2 session (tickets die with it). */
  session: object;
}

interface Pending {
  sid: string;
  caller: ServerHttp2Stream;
  from: TunnelParty;
  target: string;
  targetSerial: string;
  service: string;
  wantTls: boolean;
  timer: ReturnType<typeof setTimeout>;
  /** Set once the provider attached, while a TLS caller has yet to present its ticket. */
  provider?: TunnelLeg;
}

interface Active {
  serials: string[];
  abort: () => void;
}

/** Pending and active tunnels. Single-threaded; methods are synchronous unless noted. */
export class Tunnels {
  #registry: Registry;
  #tickets: Tickets;
  #log: Logger;
  #pending = new Map<string, Pending>();
  #active = new Set<Active>();
  #timeoutMs: number;

  constructor(opts: { registry: Registry; tickets: Tickets; log: Logger; openTimeoutMs?: number }) {
    this.#registry = opts.registry;
    this.#tickets = opts.tickets;
    this.#log = opts.log;
    this.#timeoutMs = opts.openTimeoutMs ?? OPEN_TIMEOUT_MS;
  }

  /** Tunnels relaying now. */
  get active(): number {
    return this.#active.size;
  }

  /**
   * Starts a tunnel for `caller` to `proto/name` on endpoint `target` (id or
   * unique name). Throws `NotFound`/`ServiceUnavailable` for what the hub can
   * tell at once; the provider's own answer comes later on `stream`.
   */
  open(
    stream: ServerHttp2Stream,
    from: TunnelParty,
    target: string,
    proto: ServiceProto,
    name: string,
    wantTls: boolean,
  ): void {
    const t = this.#registry.get(target);
    const control = t.online ? this.#registry.control(t.id) : undefined;
    if (!control) {
      throw new ServiceUnavailable("endpoint_offline", `Endpoint "${t.name}" is offline`);
    }
    if (!t.services.some((s) => s.proto === proto && s.name === name)) {
      throw new NotFound("unknown_service", `Endpoint "${t.name}" has no service ${proto}/${name}`);
    }
    const sid = crypto.randomUUID();
    const timer = setTimeout(
      () =>
        this.#fail(
          sid,
          new GatewayTimeout(
            "open_timeout",
            `Endpoint "${t.name}" did not answer the tunnel request in time`,
          ),
        ),
      this.#timeoutMs,
    );
    const p: Pending = {
      sid,
      caller: stream,
      from,
      target: t.id,
      targetSerial: control.serial,
      service: `${proto}/${name}`,
      wantTls,
      timer,
    };
    this.#pending.set(sid, p);
    stream.on("close", () => {
      if (this.#pending.get(sid) === p && !p.provider) this.#drop(p);
    });
    const ticket = this.#tickets.mint(
      { sid, side: "provider", serial: control.serial },
      control.owner,
    );
    control.send({
      type: "open",
      sid,
      service: { proto, name },
      from: { endpoint: from.endpoint, user: from.user },
      ticket,
    });
  }

  /** The provider attached its HTTP/2 session stream. Throws if `sid` is not its pending tunnel. */
  acceptStream(stream: ServerHttp2Stream, sid: string, endpointId: string | undefined): void {
    const p = this.#pending.get(sid);
    if (!p || p.provider) {
      throw new NotFound(
        "unknown_session",
        "No pending tunnel with that id (expired or cancelled)",
      );
    }
    if (endpointId !== p.target) {
      throw new Forbidden("not_provider", "Only the target endpoint may accept");
    }
    this.#tickets.voidTunnel(sid);
    stream.respond({ ":status": 200 });
    this.#providerAttached(p, { h2: stream });
  }

  /** A data-port connection presented a valid ticket; this owns `conn` from now on. */
  attachData(grant: TicketGrant, conn: Deno.TlsConn, rest: Uint8Array): void {
    const p = this.#pending.get(grant.sid);
    const leg: TunnelLeg = { data: { conn, rest } };
    if (p && grant.side === "provider" && !p.provider) this.#providerAttached(p, leg);
    else if (p && grant.side === "caller" && p.provider) this.#start(p, leg, p.provider);
    else abortLeg(leg);
  }

  /** The provider refused (its control stream said so). */
  refuse(endpointId: string, sid: string, status: number, code: string, message: string): void {
    const p = this.#pending.get(sid);
    if (!p || p.target !== endpointId || p.provider) return;
    const s = Number.isInteger(status) && status >= 400 && status < 600 ? status : 502;
    this.#log.info("tunnel refused by provider", {
      endpoint: endpointId,
      user: p.from.user,
      service: p.service,
      status: s,
    });
    this.#fail(sid, new ZtmError(s, code.slice(0, 64) || "refused", message.slice(0, 500)));
  }

  /** The endpoint went offline: its pending tunnels fail at once. */
  endpointOffline(id: string): void {
    for (const p of [...this.#pending.values()]) {
      if (p.target === id) {
        this.#fail(
          p.sid,
          new ServiceUnavailable("endpoint_offline", `Endpoint ${id} went offline`),
        );
      }
    }
  }

  /** The caller's session closed: tunnels still waiting for its data leg are dropped at once. */
  sessionClosed(session: object): void {
    for (const p of [...this.#pending.values()]) {
      if (p.from.session !== session) continue;
      this.#drop(p);
      if (p.provider) abortLeg(p.provider);
    }
  }

  /** Tears down every tunnel, pending or active, that a revoked serial takes part in. */
  revoke(revoked: Set<string>): void {
    for (const a of [...this.#active]) if (a.serials.some((s) => revoked.has(s))) a.abort();
    for (const p of [...this.#pending.values()]) {
      if (revoked.has(p.from.serial) || revoked.has(p.targetSerial)) {
        this.#fail(p.sid, new Forbidden("revoked", "A certificate of this tunnel was revoked"));
      }
    }
  }

  /** Stops timers and tears everything down. */
  close(): void {
    for (const p of [...this.#pending.values()]) this.#drop(p);
    for (const a of [...this.#active]) a.abort();
  }

  #providerAttached(p: Pending, provider: TunnelLeg): void {
    if (p.caller.destroyed || p.caller.closed) {
      this.#drop(p);
      abortLeg(provider);
      return;
    }
    if (!p.wantTls) {
      p.caller.respond({ ":status": 200 });
      this.#start(p, { h2: p.caller }, provider);
      return;
    }
    // The caller brings its own TLS leg: hand it a ticket and wait (same deadline).
    p.provider = provider;
    const ticket = this.#tickets.mint(
      { sid: p.sid, side: "caller", serial: p.from.serial },
      p.from.session,
    );
    p.caller.respond({ ":status": 200, [TICKET_HEADER]: ticket });
    p.caller.end();
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      this.#log.info("tunnel dropped: caller never attached", {
        endpoint: p.target,
        service: p.service,
      });
      this.#drop(p);
      abortLeg(provider);
    }, this.#timeoutMs);
  }

  #start(p: Pending, callerLeg: TunnelLeg, providerLeg: TunnelLeg): void {
    const [caller, provider] = joinLegs(callerLeg, providerLeg);
    clearTimeout(p.timer);
    this.#pending.delete(p.sid);
    this.#tickets.voidTunnel(p.sid);
    const active: Active = {
      serials: [p.from.serial, p.targetSerial],
      abort: () => {
        caller.abort();
        provider.abort();
      },
    };
    this.#active.add(active);
    const started = performance.now();
    relay(caller, provider).then((r) => {
      this.#active.delete(active);
      this.#log.debug("tunnel closed", {
        endpoint: p.target,
        user: p.from.user,
        service: p.service,
        bytes: r.ab + r.ba,
        ms: Math.round(performance.now() - started),
      });
    });
  }

  #fail(sid: string, err: ZtmError): void {
    const p = this.#pending.get(sid);
    if (!p) return;
    this.#drop(p);
    if (p.provider) abortLeg(p.provider);
    respondError(p.caller, err);
  }

  #drop(p: Pending): void {
    clearTimeout(p.timer);
    this.#pending.delete(p.sid);
    this.#tickets.voidTunnel(p.sid);
  }
}
