/**
 * The datagram side of a `udp` port mapping: one local UDP socket, and a
 * flow per client address (source ip:port), each a UDP tunnel (protocol
 * 2.1) on its own pair connection to a provider, so replies go back to the
 * client that asked.
 *
 * Bounds: at most `maxFlows` flows (datagrams from new addresses past
 * that are dropped and counted); each flow queues at most
 * `FLOW_QUEUE_DATAGRAMS` datagrams (`FLOW_QUEUE_BYTES`) while its
 * tunnel opens or is busy, so a client that floods loses its own excess and
 * nobody else's: the receive loop never waits for a flow. A flow ends
 * after `idleMs` without a datagram either way (its pair goes back to the
 * pool); datagrams that arrive for a flow that is ending are dropped and
 * counted, as are replies for a client whose flow is gone. A flow whose
 * tunnel could not open stays, dropping, for `FAILED_HOLD_MS`, so a client
 * that keeps sending to a dead service costs one attempt per hold.
 */
import { errText, type Logger } from "@ztm/shared/log";
import { MAX_DATAGRAM_BYTES } from "@ztm/shared/peer_protocol";
import type { Leg } from "@ztm/shared/splice";
import type { OpenTunnel } from "./peer/dialer.ts";
import type { Tally } from "./tunnel_state.ts";

/** Datagrams one flow queues toward its tunnel before it drops. */
export const FLOW_QUEUE_DATAGRAMS = 256;
/** Bytes one flow queues toward its tunnel before it drops. */
export const FLOW_QUEUE_BYTES = 1024 * 1024;
/** How long a flow whose tunnel failed drops its client's datagrams before the next try. */
export const FAILED_HOLD_MS = 1_000;
/** A receive buffer: the largest UDP payload over IPv6 fits, so nothing is truncated. */
export const RECEIVE_BUFFER_BYTES = 65_536;
/** How long an ending flow waits for the provider's end frame. */
const END_WAIT_MS = 5_000;
/** Default idle timeout of a mapping's flows (`--udp-idle`). */
export const DEFAULT_UDP_IDLE_MS = 60_000;
/** Default cap on one mapping's flows (`--udp-flows`). */
export const DEFAULT_UDP_FLOWS = 256;

/** Options for `UdpMap`. */
export interface UdpMapOptions {
  ip: string;
  port: number;
  idleMs: number;
  maxFlows: number;
  log: Logger;
  mesh: string;
  /** `udp/NAME`, for logs. */
  label: string;
  /** Opens a UDP tunnel to one of the pool's providers (rotation and retries are the caller's). */
  open(alive: () => boolean): Promise<OpenTunnel>;
  state?: Tally;
}

interface Flow {
  key: string;
  addr: Deno.NetAddr;
  queue: Uint8Array[];
  queuedBytes: number;
  last: number;
  /** "opening", "open", "ending" (no more datagrams taken), "failed" (dropping until `until`). */
  phase: "opening" | "open" | "ending" | "failed";
  until: number;
  wake?: () => void;
  tunnel?: OpenTunnel;
  leg?: Leg;
}

/** The flows of one udp mapping. `listen()` once; `close()` ends everything. */
export class UdpMap {
  #opts: UdpMapOptions;
  #sock: Deno.DatagramConn | undefined;
  #flows = new Map<string, Flow>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #receiving: Promise<void> | undefined;
  #capLogged = 0;

  constructor(opts: UdpMapOptions) {
    this.#opts = opts;
  }

  /** Flows live now. */
  get flows(): number {
    return this.#flows.size;
  }

  /** Binds the socket. Throws Deno's `AddrInUse`, `AddrNotAvailable` or `PermissionDenied`. */
  listen(): void {
    const { ip, port, idleMs } = this.#opts;
    const sock = Deno.listenDatagram({ transport: "udp", hostname: ip, port });
    this.#sock = sock;
    if (this.#opts.state) this.#opts.state.datagrams = true;
    this.#timer = setInterval(() => this.#sweep(), Math.max(25, Math.min(1_000, idleMs / 4)));
    this.#receiving = this.#receive(sock);
  }

  /** Closes the socket and every flow (their pairs are closed, not pooled). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    const sock = this.#sock;
    this.#sock = undefined;
    try {
      sock?.close();
    } catch { /* already closed */ }
    for (const s of this.#flows.values()) {
      s.phase = "ending";
      s.leg?.abort();
      s.wake?.();
    }
    this.#flows.clear();
    await this.#receiving;
  }

  async #receive(sock: Deno.DatagramConn): Promise<void> {
    const { state } = this.#opts;
    // One receive buffer (the largest UDP payload fits): Deno 2.9.3 receives about twice as
    // many datagrams per second into a given buffer as into one it allocates per call.
    const buf = new Uint8Array(RECEIVE_BUFFER_BYTES);
    while (true) {
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [got, addr] = await sock.receive(buf);
        data = got;
        from = addr as Deno.NetAddr;
      } catch (err) {
        if (this.#sock !== sock) return; // closed on purpose
        this.#opts.log.warn("udp receive failed", { mesh: this.#opts.mesh, err: errText(err) });
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const now = Date.now();
      const key = `${from.hostname}|${from.port}`;
      let s = this.#flows.get(key);
      if (s?.phase === "failed" && now >= s.until) {
        this.#flows.delete(key);
        s = undefined;
      }
      if (!s) {
        if (this.#flows.size >= this.#opts.maxFlows) {
          state?.drop();
          if (now - this.#capLogged >= 10_000) {
            this.#capLogged = now;
            this.#opts.log.warn("udp flow cap reached", {
              mesh: this.#opts.mesh,
              service: this.#opts.label,
              count: this.#flows.size,
            });
          }
          continue;
        }
        s = { key, addr: from, queue: [], queuedBytes: 0, last: now, phase: "opening", until: 0 };
        this.#flows.set(key, s);
        this.#run(s, sock);
      }
      if (s.phase === "ending" || s.phase === "failed" || data.byteLength > MAX_DATAGRAM_BYTES) {
        state?.drop();
        continue;
      }
      if (
        s.queue.length >= FLOW_QUEUE_DATAGRAMS ||
        s.queuedBytes + data.byteLength > FLOW_QUEUE_BYTES
      ) {
        state?.drop(); // this client sends faster than its tunnel carries: its own loss
        continue;
      }
      const d = data.slice(); // queued: out of the shared buffer
      s.last = now;
      s.queue.push(d);
      s.queuedBytes += d.byteLength;
      s.wake?.();
    }
  }

  /** One flow's life: open its tunnel, relay both ways, end it cleanly. */
  async #run(s: Flow, sock: Deno.DatagramConn): Promise<void> {
    const { log, mesh, label, state } = this.#opts;
    const alive = () => this.#flows.get(s.key) === s && s.phase === "opening";
    let tunnel: OpenTunnel;
    try {
      tunnel = await this.#opts.open(alive);
    } catch (err) {
      log.warn("udp flow failed", { mesh, service: label, err: errText(err) });
      if (s.queue.length) state?.drop(s.queue.length);
      s.queue = [];
      s.queuedBytes = 0;
      s.phase = "failed";
      s.until = Date.now() + FAILED_HOLD_MS;
      return;
    }
    if (this.#flows.get(s.key) !== s || s.phase !== "opening") {
      tunnel.leg.abort();
      tunnel.release(false);
      return;
    }
    const leg = state?.track(tunnel.leg, "down") ?? tunnel.leg;
    s.tunnel = tunnel;
    s.leg = leg;
    s.phase = "open";
    s.last = Date.now();
    let clean = true;
    const writer = (async () => {
      try {
        const batches = tunnel.datagrams;
        while (true) {
          if (s.queue.length) {
            // Everything queued goes in one write (one TLS record, one syscall).
            const batch = s.queue;
            const bytes = s.queuedBytes;
            s.queue = [];
            s.queuedBytes = 0;
            if (batches) {
              await batches.writeBatch(batch);
              if (state) state.bytesUp += bytes;
            } else {
              for (const d of batch) await leg.write(d);
            }
            continue;
          }
          if (s.phase !== "open") break;
          await new Promise<void>((r) => (s.wake = r));
          s.wake = undefined;
        }
        if (s.queue.length) state?.drop(s.queue.length);
        s.queue = [];
        s.queuedBytes = 0;
        await leg.closeWrite();
      } catch {
        clean = false;
        leg.abort();
      }
    })();
    const reader = (async () => {
      try {
        while (true) {
          const d = await leg.read();
          if (d === null) break;
          s.last = Date.now();
          if (this.#sock !== sock) {
            state?.drop();
            continue;
          }
          try {
            await sock.send(d, s.addr);
          } catch {
            state?.drop();
          }
        }
      } catch {
        clean = false;
        leg.abort();
      }
      this.#end(s); // the provider ended (idle, target gone) or we did and it answered
    })();
    await writer;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      reader.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), END_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (late) {
      clean = false;
      leg.abort();
      await reader;
    }
    if (clean) leg.close();
    tunnel.release(clean);
    if (this.#flows.get(s.key) === s) this.#flows.delete(s.key);
  }

  /** Stops taking datagrams for `s` and lets its writer send the end frame. */
  #end(s: Flow): void {
    if (s.phase !== "open") return;
    s.phase = "ending";
    s.wake?.();
  }

  #sweep(): void {
    const now = Date.now();
    for (const s of this.#flows.values()) {
      if (s.phase === "open" && now - s.last >= this.#opts.idleMs) this.#end(s);
      else if (s.phase === "failed" && now >= s.until) this.#flows.delete(s.key);
    }
  }
}
