/**
 * The provider's side of pair connections. Deno cannot run a TLS server on a
 * connection it dialled, so this runs a native TLS listener on its own
 * loopback address with the endpoint's user certificate, and for each pair
 * splices its data-port connection (after the preamble) into a loopback
 * connection to that listener. The listener keeps only connections whose
 * source port is one of its own pending dials; anything else is closed.
 *
 * On the TLS connection, the caller's hello is checked (`identity.ts`) before
 * anything else: a caller that fails any check gets an `error` line and the
 * connection closes, with no target dialled. Each `open` then goes to
 * `serve`, which checks access for the certificate's user and relays.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { errorBody } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import {
  encodePreamble,
  MAX_PAIRS_PER_CALLER,
  MAX_PROVIDER_PAIRS,
  PAIR_HANDSHAKE_MS,
  type PeerAnswer,
  type PeerRequest,
  PROVIDER_IDLE_MS,
} from "@ztm/shared/peer_protocol";
import { connLeg, type Leg, splice } from "@ztm/shared/splice";
import { type CheckedPeer, checkHello, type Signer } from "./identity.ts";
import { type DataAddress, dataKey } from "./dialer.ts";
import { PairLink, writeAll } from "./pair_link.ts";

/**
 * Serves one `open` from `caller`: resolves with a function that relays the
 * tunnel over `leg` once `opened` is written, or throws a `ZtmError` (the
 * answer). Must not touch the target before access is decided.
 */
export type OpenHandler = (
  open: { proto: string; name: string; to?: { host: string; port: number }; idleMs?: number },
  caller: CheckedPeer,
) => Promise<(leg: Leg) => Promise<boolean>>;

/** Options for `PairListener`. */
export interface PairListenerOptions {
  signer: Signer;
  log: Logger;
  mesh: string;
  revoked: () => Set<string>;
  serve: OpenHandler;
  /** A pair idle between tunnels closes after this long. */
  idleMs?: number;
  /** Pairs served or set up at once; further pair requests are dropped without a dial. */
  maxPairs?: number;
  /** Pairs served to one caller user at once; more are refused after its hello. */
  maxPairsPerCaller?: number;
}

interface Pair {
  link: PairLink;
  hubConn: Deno.Conn;
  caller?: CheckedPeer;
  /** The data address (`host:port`) of the hub whose data port carries this pair. */
  hub: string;
}

/** Accepts pairs for one mesh. `start()` once; none after `close()`. */
export class PairListener {
  #opts: Required<PairListenerOptions>;
  #listener: Deno.TlsListener | undefined;
  #port = 0;
  /** Pending loopback dials by their source port. */
  #expected = new Map<number, (conn: Deno.TlsConn) => void>();
  /** Loopback connections accepted before their dial registered (a race), by source port. */
  #early = new Map<number, Deno.TlsConn>();
  #pairs = new Set<Pair>();
  /** Pairs attached and not yet ended (dialling, handshaking or served). */
  #attaching = 0;
  #dropped = 0;
  #droppedLogged = -Infinity;
  #closed = false;

  constructor(opts: PairListenerOptions) {
    this.#opts = {
      idleMs: PROVIDER_IDLE_MS,
      maxPairs: MAX_PROVIDER_PAIRS,
      maxPairsPerCaller: MAX_PAIRS_PER_CALLER,
      ...opts,
    };
  }

  /** Binds the loopback TLS listener. */
  start(): void {
    const { signer } = this.#opts;
    this.#listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: signer.own.certPem,
      key: signer.own.keyPem,
    });
    this.#port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accept(this.#listener);
  }

  /**
   * Serves the signer's current certificate (after a renewal) on a new loopback
   * listener; the old one keeps accepting dials already on their way for a
   * few seconds. Pairs open now keep theirs.
   */
  reload(): void {
    if (this.#closed || !this.#listener) return;
    const old = this.#listener;
    this.start();
    setTimeout(() => {
      try {
        old.close();
      } catch { /* already closed */ }
    }, PAIR_HANDSHAKE_MS);
  }

  /** The port of the loopback TLS listener (where pairs are served; any other dial is refused). */
  get loopbackPort(): number {
    return this.#port;
  }

  /** Pairs open now. */
  get pairs(): number {
    return this.#pairs.size;
  }

  /** Pairs attached and not yet ended (dialling, handshaking or served). */
  get attaching(): number {
    return this.#attaching;
  }

  /**
   * Attaches pair `sid`: dials the hub's data port, presents `ticket`, and
   * serves the caller that arrives through it. Resolves when the pair closes;
   * never throws.
   */
  async attach(data: DataAddress, ticket: string, sid: string): Promise<void> {
    if (this.#attaching >= this.#opts.maxPairs) {
      this.#dropped++;
      if (Date.now() - this.#droppedLogged >= 10_000) { // one line per burst
        this.#droppedLogged = Date.now();
        this.#opts.log.warn("pairs dropped: too many pairs", {
          mesh: this.#opts.mesh,
          count: this.#dropped,
        });
      }
      return;
    }
    this.#attaching++;
    let hubConn: Deno.TcpConn | undefined;
    let local: Deno.TcpConn | undefined;
    try {
      if (!this.#listener) throw new Error("pair listener not started");
      hubConn = await Deno.connect({ hostname: data.hostname, port: data.port });
      hubConn.setNoDelay(true);
      await writeAll(hubConn, encodePreamble(ticket));
      local = await Deno.connect({ hostname: "127.0.0.1", port: this.#port });
      local.setNoDelay(true);
      const port = (local.localAddr as Deno.NetAddr).port;
      const early = this.#early.get(port);
      this.#early.delete(port);
      const accepted = early
        ? Promise.resolve(early)
        : new Promise<Deno.TlsConn>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.#expected.delete(port);
            reject(new Error("loopback TLS connection never arrived"));
          }, PAIR_HANDSHAKE_MS);
          this.#expected.set(port, (conn) => {
            clearTimeout(timer);
            resolve(conn);
          });
        });
      const hop = splice(connLeg(hubConn), connLeg(local));
      const tls = await accepted;
      const pair: Pair = { link: new PairLink(tls), hubConn, hub: dataKey(data) };
      this.#pairs.add(pair);
      try {
        await this.#serve(pair, sid);
      } finally {
        this.#pairs.delete(pair);
        pair.link.close();
        // Let the loopback hop flush our last words (an `error` line) before cutting it.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([hop, new Promise((r) => (timer = setTimeout(r, 1_000)))]);
        clearTimeout(timer);
        closeQuietly(hubConn);
        closeQuietly(local);
        await hop;
      }
    } catch (err) {
      this.#opts.log.info("pair failed", { mesh: this.#opts.mesh, err: errText(err) });
      for (const c of [hubConn, local]) {
        try {
          c?.close();
        } catch { /* already closed */ }
      }
    } finally {
      this.#attaching--;
    }
  }

  /** Closes pairs whose caller's certificate is on `revoked`. */
  revoke(revoked: Set<string>): void {
    for (const pair of this.#pairs) {
      if (!pair.caller || !revoked.has(pair.caller.serial)) continue;
      this.#opts.log.info("pair closed: peer certificate revoked", {
        mesh: this.#opts.mesh,
        serial: pair.caller.serial,
        user: pair.caller.user,
      });
      this.#closePair(pair);
    }
  }

  /** Closes the pairs carried by the data port at `data` (that hub's link is gone). */
  dropHub(data: DataAddress): void {
    const hub = dataKey(data);
    for (const pair of this.#pairs) if (pair.hub === hub) this.#closePair(pair);
  }

  /** Closes every pair. */
  dropAll(): void {
    for (const pair of this.#pairs) this.#closePair(pair);
  }

  close(): void {
    this.#closed = true;
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    this.dropAll();
  }

  #closePair(pair: Pair): void {
    pair.link.close();
    try {
      pair.hubConn.close();
    } catch { /* already closed */ }
  }

  async #accept(listener: Deno.TlsListener): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TlsConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#closed || err instanceof Deno.errors.BadResource) return;
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const from = conn.remoteAddr as Deno.NetAddr;
      if (from.hostname !== "127.0.0.1") {
        closeQuietly(conn);
        continue;
      }
      const take = this.#expected.get(from.port);
      if (!take) {
        // Our own dial may not have registered yet: hold it briefly, then close it.
        this.#early.set(from.port, conn);
        setTimeout(() => {
          if (this.#early.get(from.port) !== conn) return;
          this.#early.delete(from.port);
          closeQuietly(conn);
        }, 1_000);
        continue;
      }
      this.#expected.delete(from.port);
      take(conn);
    }
  }

  /** The pair's life: the caller's hello, then its `open`s one after another. */
  async #serve(pair: Pair, sid: string): Promise<void> {
    const { signer, log, mesh } = this.#opts;
    const { link } = pair;
    const timer = setTimeout(() => link.close(), PAIR_HANDSHAKE_MS);
    let caller: CheckedPeer;
    try {
      const hello = await link.readMessage<PeerRequest>();
      caller = await checkHello(hello, {
        caPem: signer.own.caPem,
        revoked: this.#opts.revoked(),
        role: "caller",
        serverName: signer.name,
        serverEndpoint: signer.own.endpoint,
        sid,
      });
      let mine = 0;
      for (const p of this.#pairs) if (p.caller?.user === caller.user) mine++;
      if (mine >= this.#opts.maxPairsPerCaller) {
        throw agentError(
          "too_many_pairs",
          `User "${caller.user}" already holds ${this.#opts.maxPairsPerCaller} pairs to this endpoint`,
        );
      }
    } catch (err) {
      clearTimeout(timer);
      if (!(err instanceof ZtmError)) {
        log.info("pair failed", { mesh, err: errText(err) }); // closed, cut or timed out
        return;
      }
      const { status, body } = errorBody(err);
      log.warn("pair refused", { mesh, status, err: body.error.message });
      await link.writeMessages({ type: "error", status, ...body.error }).catch(() => {});
      return;
    }
    clearTimeout(timer);
    pair.caller = caller;
    // Our hello goes out with the answer to the first open, in one write.
    let prefix: PeerAnswer[] = [
      await signer.hello(caller.name, caller.endpoint, signer.name, signer.own.endpoint, sid),
    ];
    while (!link.closed) {
      let msg: PeerRequest | null;
      // Between tunnels a pair is idle: it closes after `idleMs` (the caller's pool closes sooner).
      const idle = setTimeout(() => {
        log.info("pair closed: idle", { mesh, user: caller.user });
        link.close();
      }, this.#opts.idleMs);
      try {
        msg = await link.readMessage<PeerRequest>();
      } catch (err) {
        log.info("pair closed: bad line", { mesh, err: errText(err) });
        return;
      } finally {
        clearTimeout(idle);
      }
      if (msg === null) return;
      if (caller.notAfter.getTime() <= Date.now()) {
        log.info("pair closed: peer certificate expired", { mesh, user: caller.user });
        return;
      }
      if (msg.type !== "open" || typeof msg.name !== "string") {
        log.info("pair closed: unexpected message", { mesh, user: caller.user });
        return;
      }
      let relay: (leg: Leg) => Promise<boolean>;
      try {
        const to = exitDestination(msg.to);
        const idleMs = typeof msg.idleMs === "number" ? msg.idleMs : undefined;
        relay = await this.#opts.serve(
          { proto: String(msg.proto), name: msg.name, ...(to ? { to } : {}), idleMs },
          caller,
        );
      } catch (err) {
        const { status, body } = errorBody(err);
        const answer: PeerAnswer = { type: "error", status, ...body.error };
        if (!(err instanceof ZtmError)) log.error("open failed", { mesh, err: errText(err) });
        try {
          await link.writeMessages(...prefix, answer);
        } catch {
          return;
        }
        prefix = [];
        continue;
      }
      try {
        await link.writeMessages(...prefix, { type: "opened" });
      } catch {
        await relay(abortedLeg());
        return;
      }
      prefix = [];
      const clean = await relay(msg.proto === "udp" ? link.datagrams() : link.framed());
      if (!clean) return;
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** A leg that fails at once (the pair died between `opened` and the relay). */
function abortedLeg(): Leg {
  const fail = () => Promise.reject(new Error("pair connection lost"));
  return { read: fail, write: fail, closeWrite: fail, abort: () => {}, close: () => {} };
}

/** An `open`'s exit destination when it is well-formed (`{host, port}`), else undefined. */
function exitDestination(value: unknown): { host: string; port: number } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { host, port } = value as Record<string, unknown>;
  if (typeof host !== "string" || host.length === 0 || host.length > 255) return undefined;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    return undefined;
  }
  return { host, port };
}
