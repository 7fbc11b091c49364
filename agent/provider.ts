/**
 * The provider side of tunnels: which callers may reach which services. The
 * hub's `open` is only a claim, so it gets a cheap pre-check (the service
 * exists and the claimed user may use it) before this endpoint dials
 * anything; the authoritative check runs on each `open` inside a pair, on the
 * user of the caller's certificate, before the target is dialled. Refusals
 * are limited per caller user: past the limit they are answered 429 without
 * a check or a log line each (one counted line when the limit trips). A
 * refused caller never reaches the target.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { lookup } from "node:dns/promises";
import {
  EXIT_SERVICE,
  MAX_DATAGRAM_BYTES,
  MAX_REFUSALS_PER_WINDOW,
  MAX_UDP_IDLE_MS,
  MIN_UDP_IDLE_MS,
  REFUSAL_WINDOW_MS,
  UDP_IDLE_MS,
} from "@ztm/shared/peer_protocol";
import { dialExit } from "./proxy/exit_dial.ts";
import type { ExitPolicy } from "./proxy/exit_policy.ts";
import type { TunnelCaller } from "@ztm/shared/protocol";
import { connLeg, type DatagramLeg, type Leg, splice } from "@ztm/shared/splice";
import type { LocalService } from "./runtime.ts";
import type { TunnelStates } from "./tunnel_state.ts";
import { FLOW_QUEUE_BYTES, FLOW_QUEUE_DATAGRAMS, RECEIVE_BUFFER_BYTES } from "./udp_map.ts";

function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

const CONNECT_TIMEOUT_MS = 5_000;
/** How long a UDP flow that sent its end frame waits for the caller's. */
const UDP_END_WAIT_MS = 5_000;

/** A UDP flow's socket toward its target, and the target's resolved address. */
interface UdpTarget {
  sock: Deno.DatagramConn;
  addr: Deno.NetAddr;
}

/**
 * Resolves `host` (once per flow) and binds the flow's own socket: on
 * loopback for a loopback target, else on any address of the target's family.
 */
async function openUdpTarget(host: string, port: number): Promise<UdpTarget> {
  let ip = host;
  let family = host.includes(":") ? 6 : 4;
  if (!/^[\d.]+$/.test(host) && !host.includes(":")) {
    const found = await lookup(host);
    ip = found.address;
    family = found.family;
  }
  const loopback = family === 4 ? ip.startsWith("127.") : ip === "::1";
  const bind = loopback ? (family === 4 ? "127.0.0.1" : "::1") : family === 4 ? "0.0.0.0" : "::";
  const sock = Deno.listenDatagram({ transport: "udp", hostname: bind, port: 0 });
  return { sock, addr: { transport: "udp", hostname: ip, port } };
}

/** Refusals (unknown service, access denied) one caller user may cause per window. */
export const REFUSAL_LIMIT = MAX_REFUSALS_PER_WINDOW;
/** Users remembered at once; beyond that expired windows are forgotten. */
const MAX_REFUSING_USERS = 1_000;

/** Counts refusals per caller user in fixed windows (from the first refusal). Single-threaded. */
class RefusalLimiter {
  #users = new Map<string, { start: number; count: number }>();

  /** True when `user` is over the limit in its current window. */
  muted(user: string): boolean {
    const w = this.#users.get(user);
    return !!w && Date.now() - w.start < REFUSAL_WINDOW_MS && w.count >= REFUSAL_LIMIT;
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
      w = { start: now, count: 0 };
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
  #log: Logger;
  #mesh: string;
  /** Live target connections, with the service and the caller's user they serve. */
  #live = new Map<{ close(): void }, { proto: string; name: string; user: string }>();
  #refusals = new RefusalLimiter();
  #exit: ExitPolicy | undefined;

  /** Where accepted and refused tunnels are counted, per service (see `tunnel_state.ts`). */
  states: TunnelStates | undefined;

  constructor(opts: { owner: string; log: Logger; mesh: string }) {
    this.#owner = opts.owner;
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
    for (const [conn, c] of [...this.#live]) {
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
   * The pre-check of a pair request from the hub, on what it claims (the
   * caller's user comes from the hub here): throws the refusal as a
   * `ZtmError`. Dials nothing.
   */
  precheck(service: { proto: string; name: string }, from: TunnelCaller): void {
    this.#decide(service, from.user);
  }

  /**
   * The authoritative check of one `open` inside a pair, on the user of the
   * caller's certificate; then connects to the target. Resolves with the
   * relay for the tunnel's leg, or throws the refusal as a `ZtmError`.
   */
  async serve(
    service: { proto: string; name: string; to?: { host: string; port: number }; idleMs?: number },
    caller: { user: string; endpoint: string },
  ): Promise<(leg: Leg) => Promise<boolean>> {
    const s = this.#decide(service, caller.user);
    const label = `${s.proto}/${s.name}`;
    if (s.proto === "tcp" && s.name === EXIT_SERVICE && this.#exit) {
      return await this.#serveExit(s, service, caller);
    }
    if (s.proto === "udp") {
      let udpTarget: UdpTarget;
      try {
        udpTarget = await openUdpTarget(s.host, s.port);
      } catch (err) {
        throw this.#targetRefused(
          service,
          caller.user,
          `Service ${label} target ${s.host}:${s.port} is unusable: ${errText(err)}`,
        );
      }
      const idleMs = Math.min(
        MAX_UDP_IDLE_MS,
        Math.max(MIN_UDP_IDLE_MS, service.idleMs ?? UDP_IDLE_MS),
      );
      return (leg) => this.#relayUdp(s, caller, udpTarget, idleMs, leg);
    }
    let target: Deno.TcpConn;
    try {
      target = await connectTarget(s.host, s.port);
      target.setNoDelay(true);
    } catch (err) {
      throw this.#targetRefused(
        service,
        caller.user,
        `Service ${label} target ${s.host}:${s.port} is unreachable: ${errText(err)}`,
      );
    }
    return (leg) => this.#relay(s, caller, target, leg);
  }

  /** Logs and counts a target that cannot be reached; returns the 502 to throw. */
  #targetRefused(
    service: { proto: string; name: string },
    user: string,
    message: string,
  ): ZtmError {
    const refusal = agentError("target_unreachable", message);
    this.#log.info("tunnel refused", {
      mesh: this.#mesh,
      service: `${service.proto}/${service.name}`,
      user,
      status: refusal.status,
      err: message,
    });
    this.states?.service(service).refused(refusal.code, message);
    return refusal;
  }

  /**
   * Sets (or clears) this endpoint's exit: its list decides where callers may
   * go through it (`proxy/exit_policy.ts`); the mesh publishes it as `tcp/exit`.
   */
  setExit(policy: ExitPolicy | undefined): void {
    this.#exit = policy;
  }

  /** An exit tunnel: the caller and `to` are checked against the list, then the checked address dialled. */
  async #serveExit(
    s: LocalService,
    open: { to?: { host: string; port: number } },
    caller: { user: string; endpoint: string },
  ): Promise<(leg: Leg) => Promise<boolean>> {
    const label = `${s.proto}/${s.name}`;
    let target: Deno.TcpConn;
    try {
      if (!open.to) {
        throw agentError("bad_exit_destination", "An exit tunnel names its destination");
      }
      target = await dialExit(this.#exit!, { user: caller.user, owner: this.#owner }, open.to);
    } catch (err) {
      const e = err instanceof ZtmError ? err : agentError("exit_failed", errText(err));
      if (e.status === 403) this.#refusals.count(caller.user);
      this.#log.info("tunnel refused", {
        mesh: this.#mesh,
        service: label,
        user: caller.user,
        status: e.status,
        err: e.message,
      });
      this.states?.service(s).refused(e.code, e.message);
      throw e;
    }
    return (leg) => this.#relay(s, caller, target, leg);
  }

  /** Finds the service and checks `user`'s access; throws (and counts) refusals. */
  #decide(want: { proto: string; name: string }, user: string): LocalService {
    if (this.#refusals.muted(user)) {
      throw agentError(
        "too_many_refusals",
        `User "${user}" was refused too often; try again in ${REFUSAL_WINDOW_MS / 1000} s`,
      );
    }
    const label = `${want.proto}/${want.name}`;
    const deny = (code: "unknown_service" | "access_denied", message: string) => {
      const refusal = agentError(code, message);
      const count = this.#refusals.count(user);
      if (count <= REFUSAL_LIMIT) {
        this.#log.info("tunnel refused", {
          mesh: this.#mesh,
          service: label,
          user,
          status: refusal.status,
          err: message,
        });
      }
      if (count === REFUSAL_LIMIT) {
        this.#log.warn("tunnel refusals limited", { mesh: this.#mesh, user, count });
      }
      // Only for services this endpoint has: callers must not grow the table with made-up names.
      if (code !== "unknown_service") this.states?.service(want).refused(code, message);
      return refusal;
    };
    const service = this.#services.find((s) => s.proto === want.proto && s.name === want.name);
    if (!service) throw deny("unknown_service", `This endpoint has no service ${label}`);
    if (!mayUse(service, this.#owner, user)) {
      throw deny("access_denied", `User "${user}" may not use service ${label}`);
    }
    return service;
  }

  /** Splices the target connection with the tunnel's leg until both directions end. */
  async #relay(
    service: LocalService,
    caller: { user: string; endpoint: string },
    target: Deno.TcpConn,
    leg: Leg,
  ): Promise<boolean> {
    this.#log.info("tunnel accepted", {
      mesh: this.#mesh,
      service: `${service.proto}/${service.name}`,
      user: caller.user,
      endpoint: caller.endpoint,
    });
    this.#live.set(target, { proto: service.proto, name: service.name, user: caller.user });
    try {
      const local = connLeg(target);
      return (await splice(this.states?.service(service).track(local, "down") ?? local, leg)).clean;
    } finally {
      this.#live.delete(target);
    }
  }

  /**
   * Relays one UDP flow: datagrams from the leg go to the target from the
   * flow's own socket, datagrams from the target (only from its address)
   * come back one frame each. After `idleMs` without a datagram either way
   * the socket closes and the end frame goes out; the flow is clean once
   * the caller's end frame arrived too.
   */
  async #relayUdp(
    service: LocalService,
    caller: { user: string; endpoint: string },
    target: UdpTarget,
    idleMs: number,
    leg: Leg,
  ): Promise<boolean> {
    const label = `${service.proto}/${service.name}`;
    this.#log.info("udp flow accepted", {
      mesh: this.#mesh,
      service: label,
      user: caller.user,
      endpoint: caller.endpoint,
    });
    const tally = this.states?.service(service);
    if (tally) tally.datagrams = true;
    const tunnel = tally?.track(leg, "up") ?? leg;
    const sock = target.sock;
    let closed = false;
    const closeSock = () => {
      if (closed) return;
      closed = true;
      try {
        sock.close();
      } catch { /* already closed */ }
    };
    const handle = { close: closeSock };
    this.#live.set(handle, { proto: service.proto, name: service.name, user: caller.user });
    let last = Date.now();
    let clean = true;
    const idle = setInterval(() => {
      if (Date.now() - last >= idleMs) closeSock();
    }, Math.max(25, Math.min(1_000, idleMs / 4)));
    const up = (async () => {
      try {
        while (true) {
          const d = await tunnel.read();
          if (d === null) break;
          last = Date.now();
          if (closed) {
            tally?.drop(); // the flow is ending: too late for the target
            continue;
          }
          try {
            await sock.send(d, target.addr);
          } catch {
            tally?.drop();
          }
        }
      } catch {
        clean = false;
      }
      closeSock();
    })();
    // Replies are queued (bounded; the excess is the target's loss) while a write is on its
    // way, and the queue goes out in one write.
    let queue: Uint8Array[] = [];
    let queued = 0;
    let wake: (() => void) | undefined;
    const batches = "writeBatch" in leg ? leg as DatagramLeg : undefined;
    const receiving = (async () => {
      const want = target.addr;
      const buf = new Uint8Array(RECEIVE_BUFFER_BYTES);
      try {
        while (true) {
          const [d, from] = await sock.receive(buf);
          const f = from as Deno.NetAddr;
          if (f.port !== want.port || f.hostname !== want.hostname) {
            tally?.drop(); // not from the target: never passed on
            continue;
          }
          last = Date.now();
          if (
            d.byteLength > MAX_DATAGRAM_BYTES || queue.length >= FLOW_QUEUE_DATAGRAMS ||
            queued + d.byteLength > FLOW_QUEUE_BYTES
          ) {
            tally?.drop();
            continue;
          }
          queue.push(d.slice());
          queued += d.byteLength;
          wake?.();
        }
      } catch {
        // The socket closed (idle, the caller ended, access withdrawn).
      }
      closeSock();
      wake?.();
    })();
    const down = (async () => {
      try {
        while (true) {
          if (queue.length) {
            const batch = queue;
            const bytes = queued;
            queue = [];
            queued = 0;
            if (batches) {
              await batches.writeBatch(batch);
              if (tally) tally.bytesDown += bytes;
            } else {
              for (const d of batch) await tunnel.write(d);
            }
            continue;
          }
          if (closed) break;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      } catch {
        clean = false; // the pair failed
        closeSock();
      }
      await receiving;
      if (clean) {
        try {
          await tunnel.closeWrite();
        } catch {
          clean = false;
        }
      }
    })();
    await down;
    // The caller answers our end frame with its own; a caller that does not costs the pair.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      up.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), UDP_END_WAIT_MS))),
    ]);
    clearTimeout(timer);
    clearInterval(idle);
    this.#live.delete(handle);
    if (late || !clean) {
      tunnel.abort();
      await up;
      return false;
    }
    tunnel.close();
    return true;
  }

  /** Closes every live target connection. */
  close(): void {
    for (const c of this.#live.keys()) closeQuietly(c);
    this.#live.clear();
  }
}
