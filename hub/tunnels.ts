/**
 * Tunnel pairing on the hub (the control half of the data path).
 *
 * A caller asks for `proto/name` on an endpoint — over an HTTP/2 request, or
 * as an `open` line on one of its idle data links. The provider is asked on
 * one of its parked data links (`incoming`), or else over its control stream
 * (`open`, with a ticket for the data port); it attaches its leg (that link,
 * an HTTP/2 session stream, or a TLS connection presenting the ticket) or
 * refuses. Only then does the caller get its answer: 200 and its HTTP/2
 * stream becomes its leg; or (when it asked for `ztm-leg: tls`) 200 with a
 * caller ticket, which it presents on its own TLS connection; or `opened` on
 * its link. Then `relay()` joins the two legs, and links that ended cleanly
 * wait for their next tunnel. Tunnels of a revoked certificate are torn down
 * with their sessions' serials.
 */
import type { ServerHttp2Stream } from "node:http2";
import {
  Forbidden,
  GatewayTimeout,
  NotFound,
  ServiceUnavailable,
  ZtmError,
} from "@ztm/shared/errors";
import { DataLink } from "@ztm/shared/data_link";
import { errorBody } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import {
  type LinkRequest,
  OPEN_TIMEOUT_MS,
  type ServiceProto,
  TICKET_HEADER,
} from "@ztm/shared/protocol";
import type { BoundLink, DataLinks, ParkedLink } from "./data_links.ts";
import type { Registry } from "./registry.ts";
import { abortLeg, relay, type TunnelLeg } from "./relay.ts";
import type { ClaimedTicket, Tickets } from "./tickets.ts";
import { respondError } from "./respond.ts";

/**
 * How long a parked provider link may take to answer `incoming` before the
 * control stream is asked: longer than a provider's 5 s connect to its target,
 * so a slow target is not dialled twice.
 */
const OFFER_TIMEOUT_MS = 6_000;

/** Who is calling, as admitted. */
export interface TunnelParty {
  endpoint: string;
  user: string;
  serial: string;
  /** The caller's HTTP/2 session (tickets die with it). */
  session: object;
}

/** Where a caller waits for its answer: an HTTP/2 request (`wantTls`: it brings a data connection) or a link. */
export type CallerSide = { h2: ServerHttp2Stream; wantTls: boolean } | { link: BoundLink };

interface Pending {
  sid: string;
  caller: CallerSide;
  from: TunnelParty;
  target: string;
  targetUser: string;
  targetSerial: string;
  proto: ServiceProto;
  name: string;
  service: string;
  timer: ReturnType<typeof setTimeout>;
  /** Set once the provider attached, while a TLS caller has yet to present its ticket. */
  provider?: TunnelLeg;
}

interface Active {
  serials: string[];
  /** Control sessions its data links are bound to (the tunnel ends with any of them). */
  sessions: object[];
  abort: () => void;
}

/** Pending and active tunnels. Single-threaded; methods are synchronous unless noted. */
export class Tunnels {
  #registry: Registry;
  #tickets: Tickets;
  #links: DataLinks;
  #log: Logger;
  #pending = new Map<string, Pending>();
  #active = new Set<Active>();
  #timeoutMs: number;

  constructor(
    opts: {
      registry: Registry;
      tickets: Tickets;
      links: DataLinks;
      log: Logger;
      openTimeoutMs?: number;
    },
  ) {
    this.#registry = opts.registry;
    this.#tickets = opts.tickets;
    this.#links = opts.links;
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
   * tell at once; the provider's own answer comes later, to `caller`.
   */
  open(
    caller: CallerSide,
    from: TunnelParty,
    target: string,
    proto: ServiceProto,
    name: string,
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
      caller,
      from,
      target: t.id,
      targetUser: t.user,
      targetSerial: control.serial,
      proto,
      name,
      service: `${proto}/${name}`,
      timer,
    };
    this.#pending.set(sid, p);
    if ("h2" in caller) {
      caller.h2.on("close", () => {
        if (this.#pending.get(sid) === p && !p.provider) this.#drop(p);
      });
    }
    const parked = this.#links.takeParked(t.id);
    if (parked) this.#offer(p, parked);
    else this.#askOverControl(p);
  }

  /** An idle caller link sent a line: an `open` starts a tunnel; anything else closes the link. */
  openFromLink(bound: BoundLink, request: LinkRequest): void {
    if (
      request.type !== "open" || typeof request.endpoint !== "string" ||
      request.proto !== "tcp" || typeof request.name !== "string"
    ) {
      this.#log.info("data link dropped", { endpoint: bound.owner.endpoint, err: "bad request" });
      this.#links.drop(bound);
      return;
    }
    try {
      this.open({ link: bound }, bound.owner, request.endpoint, request.proto, request.name);
    } catch (err) {
      this.#answerLink(bound, err);
    }
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
  attachData(claimed: ClaimedTicket, conn: Deno.TlsConn, rest: Uint8Array): void {
    const bound: BoundLink = {
      link: new DataLink(conn, rest),
      owner: {
        endpoint: claimed.endpoint,
        user: claimed.user,
        serial: claimed.serial,
        session: claimed.owner,
      },
      role: claimed.side === "caller" ? "out" : "in",
    };
    const p = this.#pending.get(claimed.sid);
    const leg: TunnelLeg = { link: bound };
    if (p && claimed.side === "provider" && !p.provider) this.#providerAttached(p, leg);
    else if (p && claimed.side === "caller" && p.provider) this.#start(p, leg, p.provider);
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

  /**
   * A session closed: tunnels still waiting for its caller's data leg are
   * dropped, and tunnels on data links bound to it end (through a NAT that
   * lost its state, such a link could otherwise hang until TCP gives up).
   */
  sessionClosed(session: object): void {
    for (const a of [...this.#active]) if (a.sessions.includes(session)) a.abort();
    for (const p of [...this.#pending.values()]) {
      if (p.from.session !== session) continue;
      this.#drop(p);
      if (p.provider) abortLeg(p.provider);
      if ("link" in p.caller) this.#links.drop(p.caller.link);
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

  /** Asks the provider on its parked link; a dead or silent link falls back to the control stream. */
  async #offer(p: Pending, parked: ParkedLink): Promise<void> {
    const { bound } = parked;
    let answer: LinkRequest | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await bound.link.writeMessage({
        type: "incoming",
        sid: p.sid,
        service: { proto: p.proto, name: p.name },
        from: { endpoint: p.from.endpoint, user: p.from.user },
      });
      answer = await Promise.race([
        parked.answer,
        new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), OFFER_TIMEOUT_MS))),
      ]);
    } catch {
      answer = null;
    } finally {
      clearTimeout(timer);
    }
    const live = this.#pending.get(p.sid) === p && !p.provider;
    if (live && answer?.type === "accept" && answer.sid === p.sid) {
      return this.#providerAttached(p, { link: bound });
    }
    if (live && answer?.type === "refuse" && answer.sid === p.sid) {
      this.#links.idle(bound);
      return this.refuse(p.target, p.sid, answer.status, answer.code, answer.message);
    }
    this.#links.drop(bound);
    if (live) this.#askOverControl(p);
  }

  /** Sends the provider `open` (with a ticket for its data leg) over its control stream. */
  #askOverControl(p: Pending): void {
    const control = this.#registry.control(p.target);
    if (!control) {
      return this.#fail(
        p.sid,
        new ServiceUnavailable("endpoint_offline", `Endpoint ${p.target} went offline`),
      );
    }
    p.targetSerial = control.serial;
    const ticket = this.#tickets.mint(
      {
        sid: p.sid,
        side: "provider",
        serial: control.serial,
        endpoint: p.target,
        user: p.targetUser,
      },
      control.owner,
    );
    control.send({
      type: "open",
      sid: p.sid,
      service: { proto: p.proto, name: p.name },
      from: { endpoint: p.from.endpoint, user: p.from.user },
      ticket,
    });
  }

  /** Tells a caller link that its `open` failed; the link waits for the next one. */
  #answerLink(bound: BoundLink, err: unknown): void {
    const { status, body } = errorBody(err);
    bound.link.writeMessage({ type: "error", status, ...body.error }).then(
      () => this.#links.idle(bound),
      () => this.#links.drop(bound),
    );
  }

  #providerAttached(p: Pending, provider: TunnelLeg): void {
    const caller = p.caller;
    if ("link" in caller ? caller.link.link.closed : caller.h2.destroyed || caller.h2.closed) {
      this.#drop(p);
      abortLeg(provider);
      if ("link" in caller) this.#links.drop(caller.link);
      return;
    }
    if ("link" in caller) {
      this.#drop(p);
      caller.link.link.writeMessage({ type: "opened" }).then(
        () => this.#start(p, caller, provider),
        () => {
          abortLeg(caller);
          abortLeg(provider);
        },
      );
      return;
    }
    if (!caller.wantTls) {
      caller.h2.respond({ ":status": 200 });
      this.#start(p, { h2: caller.h2 }, provider);
      return;
    }
    // The caller brings its own TLS leg: hand it a ticket and wait (same deadline).
    p.provider = provider;
    const ticket = this.#tickets.mint(
      {
        sid: p.sid,
        side: "caller",
        serial: p.from.serial,
        endpoint: p.from.endpoint,
        user: p.from.user,
      },
      p.from.session,
    );
    caller.h2.respond({ ":status": 200, [TICKET_HEADER]: ticket });
    caller.h2.end();
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
    this.#drop(p);
    const active: Active = {
      serials: [p.from.serial, p.targetSerial],
      sessions: [callerLeg, providerLeg].flatMap((l) => "link" in l ? [l.link.owner.session] : []),
      abort: () => {
        abortLeg(callerLeg);
        abortLeg(providerLeg);
      },
    };
    this.#active.add(active);
    const started = performance.now();
    relay(callerLeg, providerLeg).then((r) => {
      this.#active.delete(active);
      for (const leg of [callerLeg, providerLeg]) {
        if (!("link" in leg)) continue;
        if (r.clean) this.#links.idle(leg.link);
        else this.#links.drop(leg.link);
      }
      this.#log.debug("tunnel closed", {
        endpoint: p.target,
        user: p.from.user,
        service: p.service,
        bytes: r.ab + r.ba,
        ms: Math.round(performance.now() - started),
      });
    }, (err) => this.#log.error("relay failed", { err: errText(err) }));
  }

  #fail(sid: string, err: ZtmError): void {
    const p = this.#pending.get(sid);
    if (!p) return;
    this.#drop(p);
    if (p.provider) abortLeg(p.provider);
    if ("link" in p.caller) this.#answerLink(p.caller.link, err);
    else respondError(p.caller.h2, err);
  }

  #drop(p: Pending): void {
    clearTimeout(p.timer);
    this.#pending.delete(p.sid);
    this.#tickets.voidTunnel(p.sid);
  }
}
