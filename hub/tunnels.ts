/**
 * Pairing on the hub (the control half of the data path). A caller asks for
 * `proto/name` on an endpoint; the hub mints the provider a ticket and asks it
 * over its control stream (`open`); the provider pre-checks and answers
 * `accept` or `refuse`. Only then does the caller get its answer: 200 with
 * its own ticket, or the refusal. Both tickets go to the data port
 * (`relay/data_port.ts`), which splices the two connections blind; nothing
 * here moves a tunnel's byte or ever sees one.
 */
import type { ServerHttp2Stream } from "node:http2";
import { ZtmError } from "@ztm/shared/errors";
import type { Logger } from "@ztm/shared/log";
import { OPEN_TIMEOUT_MS, type ServiceProto } from "@ztm/shared/protocol";
import type { PairTicket } from "@ztm/shared/peer_protocol";
import { hubError } from "./errors.ts";
import type { Registry } from "./registry.ts";
import type { Tickets } from "./tickets.ts";
import { respondError, respondJson } from "./respond.ts";

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
  stream: ServerHttp2Stream;
  from: TunnelParty;
  target: string;
  targetSerial: string;
  service: string;
  timer: ReturnType<typeof setTimeout>;
}

/** Pairs waiting for their provider's answer. Single-threaded; methods are synchronous. */
export class Tunnels {
  #registry: Registry;
  #tickets: Tickets;
  #log: Logger;
  #pending = new Map<string, Pending>();
  #timeoutMs: number;

  #onOutcome: (err?: ZtmError) => void;

  constructor(
    opts: {
      registry: Registry;
      tickets: Tickets;
      log: Logger;
      openTimeoutMs?: number;
      /** Told each pairing's outcome once: nothing when the caller got its ticket, else why not. */
      onOutcome?: (err?: ZtmError) => void;
    },
  ) {
    this.#onOutcome = opts.onOutcome ?? (() => {});
    this.#registry = opts.registry;
    this.#tickets = opts.tickets;
    this.#log = opts.log;
    this.#timeoutMs = opts.openTimeoutMs ?? OPEN_TIMEOUT_MS;
  }

  /** Pairs waiting for their provider's answer. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Asks the provider of `proto/name` on `target` (id or unique name) for a
   * pair with `from`. Throws `NotFound`/`ServiceUnavailable` for what the hub
   * can tell at once; the provider's answer goes to `stream` later.
   */
  open(
    stream: ServerHttp2Stream,
    from: TunnelParty,
    target: string,
    proto: ServiceProto,
    name: string,
  ): void {
    const t = this.#registry.get(target);
    const control = t.online ? this.#registry.control(t.id) : undefined;
    if (!control) {
      throw hubError("endpoint_offline", `Endpoint "${t.name}" is offline`);
    }
    if (!t.services.some((s) => s.proto === proto && s.name === name)) {
      throw hubError("unknown_service", `Endpoint "${t.name}" has no service ${proto}/${name}`);
    }
    const sid = crypto.randomUUID();
    const timer = setTimeout(
      () =>
        this.#fail(
          sid,
          hubError(
            "open_timeout",
            `Endpoint "${t.name}" did not answer the tunnel request in time`,
          ),
        ),
      this.#timeoutMs,
    );
    const p: Pending = {
      sid,
      stream,
      from,
      target: t.id,
      targetSerial: control.serial,
      service: `${proto}/${name}`,
      timer,
    };
    this.#pending.set(sid, p);
    stream.on("close", () => {
      if (this.#pending.get(sid) === p) this.#drop(p, true);
    });
    const ticket = this.#tickets.mint(
      { sid, side: "provider", serial: control.serial, endpoint: t.id },
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

  /** The provider accepted (its control stream said so): the caller gets its ticket. */
  accept(endpointId: string, sid: string): void {
    const p = this.#pending.get(sid);
    if (!p || p.target !== endpointId) return;
    this.#drop(p, false);
    const ticket = this.#tickets.mint(
      { sid, side: "caller", serial: p.from.serial, endpoint: p.from.endpoint },
      p.from.session,
    );
    const answer: PairTicket = { sid, ticket };
    respondJson(p.stream, 200, answer);
    this.#onOutcome();
  }

  /** The provider refused (its control stream said so). */
  refuse(endpointId: string, sid: string, status: number, code: string, message: string): void {
    const p = this.#pending.get(sid);
    if (!p || p.target !== endpointId) return;
    const s = Number.isInteger(status) && status >= 400 && status < 600 ? status : 502;
    this.#log.info("tunnel refused by provider", {
      endpoint: endpointId,
      user: p.from.user,
      service: p.service,
      status: s,
    });
    this.#fail(sid, new ZtmError(s, code.slice(0, 64) || "refused", message.slice(0, 500)));
  }

  /** The endpoint went offline: its pending pairs fail at once. */
  endpointOffline(id: string): void {
    for (const p of [...this.#pending.values()]) {
      if (p.target === id) {
        this.#fail(
          p.sid,
          hubError("endpoint_offline", `Endpoint ${id} went offline`),
        );
      }
    }
  }

  /** A session closed: its callers' pending pairs are dropped. */
  sessionClosed(session: object): void {
    for (const p of [...this.#pending.values()]) {
      if (p.from.session === session) this.#drop(p, true);
    }
  }

  /** Fails every pending pair that a revoked serial takes part in. */
  revoke(revoked: Set<string>): void {
    for (const p of [...this.#pending.values()]) {
      if (revoked.has(p.from.serial) || revoked.has(p.targetSerial)) {
        this.#fail(p.sid, hubError("revoked", "A certificate of this tunnel was revoked"));
      }
    }
  }

  /** Stops timers and drops every pending pair. */
  close(): void {
    for (const p of [...this.#pending.values()]) this.#drop(p, true);
  }

  #fail(sid: string, err: ZtmError): void {
    const p = this.#pending.get(sid);
    if (!p) return;
    this.#drop(p, true);
    respondError(p.stream, err);
    this.#onOutcome(err);
  }

  #drop(p: Pending, voidTickets: boolean): void {
    clearTimeout(p.timer);
    this.#pending.delete(p.sid);
    if (voidTickets) this.#tickets.voidPair(p.sid);
  }
}
