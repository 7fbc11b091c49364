/**
 * The caller's side of pair connections: end-to-end TLS connections to other
 * agents through the hub's data port, pooled per peer so a warm pair opens a
 * tunnel with one request/answer inside the TLS — no hub work, no handshake,
 * no ticket.
 *
 * A fresh pair: the control code gets a ticket from the hub (a plain value
 * handed in), this dials the data port over TCP with no-delay, writes the
 * preamble, runs a native TLS client whose only accepted name is the
 * provider's peer name under the mesh CA (never with hostname checks off:
 * native TLS also trusts public roots, which cannot issue `.invalid` names),
 * then sends its hello and the first `open` in one write and checks the
 * provider's hello (certificate, role, CRL, user) before any tunnel byte.
 *
 * Pools are bounded per peer (idle and in all) and idle pairs close after
 * `PAIR_IDLE_MS`. A pair whose peer's certificate is revoked closes at once.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import {
  encodePreamble,
  MAX_IDLE_PAIRS_PER_PEER,
  MAX_PAIRS_PER_PEER,
  PAIR_HANDSHAKE_MS,
  PAIR_IDLE_MS,
  type PairTicket,
  type PeerAnswer,
  peerName,
  type PeerOpen,
} from "@ztm/shared/peer_protocol";
import type { DatagramLeg, Leg } from "@ztm/shared/splice";
import { type CheckedPeer, checkHello, type Signer } from "./identity.ts";
import { PairLink, writeAll } from "./pair_link.ts";

/**
 * The service a tunnel goes to: a TCP service (`to` only for an exit,
 * `EXIT_SERVICE`), or a UDP flow on a UDP one, with the idle timeout the
 * provider should keep (it may cap it).
 */
export interface TunnelService {
  proto: "tcp" | "udp";
  name: string;
  to?: { host: string; port: number };
  idleMs?: number;
}

function openMessage(service: TunnelService): PeerOpen {
  const { proto, name, to } = service;
  if (proto === "udp") return { type: "open", proto, name, idleMs: service.idleMs };
  return to ? { type: "open", proto, name, to: { host: to.host, port: to.port } } : {
    type: "open",
    proto,
    name,
  };
}

/** Where the hub's data port is. */
export interface DataAddress {
  hostname: string;
  port: number;
}

/** A data address as one string (`host:port`), to tell which hub carries a pair. */
export function dataKey(data: DataAddress): string {
  return `${data.hostname}:${data.port}`;
}

/** The provider a tunnel goes to: its endpoint id and the user whose certificate it must hold. */
export interface PeerTarget {
  endpoint: string;
  user: string;
}

interface Pair {
  link: PairLink;
  peer: CheckedPeer;
  key: string;
  idleSince: number;
  /** The data address (`host:port`) of the hub whose data port carries this pair. */
  hub: string;
}

/** An open tunnel on a pair: its framed leg, and `release` once the splice ended. */
export interface OpenTunnel {
  leg: Leg;
  /** UDP flows: the same leg, with batched writes. */
  datagrams?: DatagramLeg;
  release(clean: boolean): void;
  peer: CheckedPeer;
}

/** Options for `PairDialer`. */
export interface PairDialerOptions {
  signer: Signer;
  log: Logger;
  mesh: string;
  /** Serials on the newest verified CRL. */
  revoked: () => Set<string>;
  idleMs?: number;
  maxIdlePerPeer?: number;
  maxPerPeer?: number;
}

/** Pooled pair connections of one mesh. Methods may be called concurrently; none after `close()`. */
export class PairDialer {
  #opts: Required<PairDialerOptions>;
  #idle = new Map<string, Pair[]>();
  #count = new Map<string, number>();
  #all = new Set<Pair>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #data: DataAddress | undefined;
  #closed = false;

  constructor(opts: PairDialerOptions) {
    this.#opts = {
      idleMs: PAIR_IDLE_MS,
      maxIdlePerPeer: MAX_IDLE_PAIRS_PER_PEER,
      maxPerPeer: MAX_PAIRS_PER_PEER,
      ...opts,
    };
  }

  /** Sets (or clears) the hub's data port, on every (re)connection to the hub. */
  setDataAddress(data: DataAddress | undefined): void {
    this.#data = data;
  }

  /** Pair connections open now (idle or carrying a tunnel). */
  get pairs(): number {
    return this.#all.size;
  }

  /**
   * Opens a tunnel to `service` on `target`: on an idle pair if there is one,
   * else on a fresh pair, asking `ticket()` (the control code's request to
   * the hub) for its ticket. Throws the provider's or the hub's error.
   */
  async open(
    target: PeerTarget,
    service: TunnelService,
    ticket: () => Promise<PairTicket>,
    data?: DataAddress,
  ): Promise<OpenTunnel> {
    const key = `${target.endpoint}\n${target.user}`;
    while (true) {
      const pair = this.#takeIdle(key);
      if (!pair) break;
      const answer = await this.#ask(pair, service).catch(() => null);
      if (answer) return this.#opened(pair, answer, service);
      this.#drop(pair); // dead or confused: try the next, then a fresh one
    }
    if ((this.#count.get(key) ?? 0) >= this.#opts.maxPerPeer) {
      throw agentError(
        "too_many_pairs",
        `Already ${this.#opts.maxPerPeer} pair connections to endpoint ${target.endpoint}`,
      );
    }
    const { pair, answer } = await this.#fresh(key, target, service, ticket, data ?? this.#data);
    return this.#opened(pair, answer, service);
  }

  /** Closes pairs whose peer's certificate is on `revoked`. */
  revoke(revoked: Set<string>): void {
    for (const pair of [...this.#all]) {
      if (!revoked.has(pair.peer.serial)) continue;
      this.#opts.log.info("pair closed: peer certificate revoked", {
        mesh: this.#opts.mesh,
        serial: pair.peer.serial,
        endpoint: pair.peer.endpoint,
      });
      this.#drop(pair);
    }
  }

  /** Closes the pairs carried by the data port at `data` (that hub's link is gone). */
  dropHub(data: DataAddress): void {
    const hub = dataKey(data);
    for (const pair of [...this.#all]) if (pair.hub === hub) this.#drop(pair);
  }

  /** Closes every pair (the hub link is gone, and with it every splice). */
  dropAll(): void {
    for (const pair of [...this.#all]) this.#drop(pair);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.dropAll();
  }

  #takeIdle(key: string): Pair | undefined {
    const list = this.#idle.get(key);
    let pair = list?.pop();
    while (pair && pair.peer.notAfter.getTime() <= Date.now()) {
      this.#drop(pair); // the peer's certificate expired: so did the pair
      pair = list?.pop();
    }
    if (list?.length === 0) this.#idle.delete(key);
    return pair;
  }

  #opened(pair: Pair, answer: PeerAnswer, service: TunnelService): OpenTunnel {
    if (answer.type === "error") {
      this.#release(pair, true);
      throw new ZtmError(
        Number(answer.status) || 502,
        String(answer.code ?? "refused").slice(0, 64),
        String(answer.message ?? "").slice(0, 500),
      );
    }
    if (answer.type !== "opened") {
      this.#drop(pair);
      throw agentError("peer_protocol", "The provider answered out of turn");
    }
    let released = false;
    return {
      ...(service.proto === "udp"
        ? (() => {
          const d = pair.link.datagrams();
          return { leg: d, datagrams: d };
        })()
        : { leg: pair.link.framed() }),
      peer: pair.peer,
      release: (clean) => {
        if (released) return;
        released = true;
        this.#release(pair, clean);
      },
    };
  }

  async #ask(pair: Pair, service: TunnelService): Promise<PeerAnswer | null> {
    await pair.link.writeMessages(openMessage(service));
    return await pair.link.readMessage<PeerAnswer>();
  }

  async #fresh(
    key: string,
    target: PeerTarget,
    service: TunnelService,
    ticket: () => Promise<PairTicket>,
    data: DataAddress | undefined,
  ): Promise<{ pair: Pair; answer: PeerAnswer }> {
    if (!data) {
      throw agentError("no_data_port", "The hub has no data port: no tunnels for now");
    }
    // Dial while the hub asks the provider: the TCP handshake overlaps the control round trip.
    const dialing = Deno.connect({ hostname: data.hostname, port: data.port });
    dialing.catch(() => {});
    let tcp: Deno.TcpConn | undefined;
    let granted: PairTicket;
    try {
      granted = await ticket();
    } catch (err) {
      dialing.then((c) => c.close(), () => {});
      throw err;
    }
    this.#count.set(key, (this.#count.get(key) ?? 0) + 1);
    let link: PairLink | undefined;
    let timedOut = false;
    const timeout = () =>
      agentError(
        "pair_failed",
        `The pair with endpoint ${target.endpoint} did not finish its handshake in ${
          PAIR_HANDSHAKE_MS / 1000
        } s`,
      );
    try {
      try {
        tcp = await dialing;
      } catch (err) {
        throw agentError(
          "data_port_unreachable",
          `The hub's data port ${data.hostname}:${data.port} is unreachable: ${errText(err)}`,
        );
      }
      tcp.setNoDelay(true);
      await writeAll(tcp, encodePreamble(granted.ticket));
      const serverName = peerName(target.user);
      const signer = this.#opts.signer;
      const deadline = setTimeout(() => {
        timedOut = true;
        link ? link.close() : tcp?.close();
      }, PAIR_HANDSHAKE_MS);
      try {
        const tls = await Deno.startTls(tcp, {
          hostname: serverName,
          caCerts: [signer.own.caPem],
        });
        link = new PairLink(tls);
        try {
          await tls.handshake();
        } catch (err) {
          if (timedOut) throw timeout();
          throw agentError(
            "peer_refused",
            503,
            `Peer refused: endpoint ${target.endpoint} is not ${target.user}'s (${errText(err)})`,
          );
        }
        await link.writeMessages(
          await signer.hello(
            signer.name,
            signer.own.endpoint,
            serverName,
            target.endpoint,
            granted.sid,
          ),
          openMessage(service),
        );
        const hello = await link.readMessage<PeerAnswer>();
        if (hello?.type === "error") {
          throw new ZtmError(Number(hello.status) || 502, hello.code, hello.message);
        }
        const peer = await checkHello(hello, {
          caPem: signer.own.caPem,
          revoked: this.#opts.revoked(),
          role: "provider",
          user: target.user,
          serverName,
          serverEndpoint: target.endpoint,
          callerName: signer.name,
          callerEndpoint: signer.own.endpoint,
          sid: granted.sid,
        });
        const answer = await link.readMessage<PeerAnswer>();
        if (!answer) throw agentError("peer_closed", "The provider closed the pair");
        const pair: Pair = { link, peer, key, idleSince: 0, hub: dataKey(data) };
        this.#all.add(pair);
        return { pair, answer };
      } finally {
        clearTimeout(deadline);
      }
    } catch (err) {
      this.#count.set(key, (this.#count.get(key) ?? 1) - 1);
      if (link) link.close();
      else tcp?.close();
      if (err instanceof ZtmError) throw err;
      if (timedOut) throw timeout();
      throw agentError("pair_failed", `Pair connection failed: ${errText(err)}`);
    }
  }

  #release(pair: Pair, clean: boolean): void {
    const list = this.#idle.get(pair.key) ?? [];
    if (!clean || this.#closed || pair.link.closed || list.length >= this.#opts.maxIdlePerPeer) {
      this.#drop(pair);
      return;
    }
    pair.idleSince = Date.now();
    list.push(pair);
    this.#idle.set(pair.key, list);
    this.#timer ??= setInterval(() => this.#sweep(), Math.min(5_000, this.#opts.idleMs));
  }

  #drop(pair: Pair): void {
    if (!this.#all.delete(pair)) {
      pair.link.close();
      return;
    }
    pair.link.close();
    const left = (this.#count.get(pair.key) ?? 1) - 1;
    if (left > 0) this.#count.set(pair.key, left);
    else this.#count.delete(pair.key);
    const list = this.#idle.get(pair.key);
    if (list) {
      const i = list.indexOf(pair);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#idle.delete(pair.key);
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const list of [...this.#idle.values()]) {
      for (const pair of [...list]) if (now - pair.idleSince >= this.#opts.idleMs) this.#drop(pair);
    }
    if (this.#idle.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
