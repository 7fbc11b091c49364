/**
 * `UdpMap` on loopback: real client sockets send to the mapping's real UDP
 * socket, and each flow's tunnel is a real TCP connection carrying datagram
 * frames (`datagramLeg`, protocol 2.1) to a stand-in provider in this test
 * (the pair's TLS and the hub are not this module's concern). Checked: the
 * flow cap, each flow's queue bounds (datagrams and bytes), the idle end and a
 * fresh flow after it, the hold after a tunnel that could not open, and that
 * every datagram dropped on purpose is counted.
 */
import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import { MAX_DATAGRAM_BYTES } from "@ztm/shared/peer_protocol";
import { connLeg, type DatagramLeg, datagramLeg } from "@ztm/shared/splice";
import { freePort } from "../tests/fixtures/net_helpers.ts";
import { UdpClient } from "../tests/fixtures/udp_helpers.ts";
import type { OpenTunnel } from "./peer/dialer.ts";
import { Tally } from "./tunnel_state.ts";
import { FLOW_QUEUE_BYTES, FLOW_QUEUE_DATAGRAMS, UdpMap } from "./udp_map.ts";

const PEER = {
  user: "bob",
  endpoint: "bob-ep",
  serial: "01",
  name: "office",
  notAfter: new Date(Date.now() + 3_600_000),
};

/** Polls `check` every 5 ms until it holds; throws naming `what` after `ms`. */
async function until(check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Datagrams waiting in the kernel for the IPv4 UDP socket on `port`
 * (`rx_queue` of `/proc/net/udp`), so a test can let the mapping read what it
 * was sent before sending more, and no datagram is lost to a full buffer.
 */
function backlog(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hexPort}`)) return parseInt(f[4].split(":")[1], 16);
  }
  throw new Error(`no UDP socket on port ${port}`);
}

/** How the stand-in provider treats one tunnel. */
type Provide = "echo" | "count";

/**
 * A loopback UDP mapping with its stand-in provider: a TCP listener whose
 * connections are the flows' tunnels. `open()` is the mapping's; it waits for
 * `gate` when one is set, and fails while `refuse` is set.
 */
class Rig implements AsyncDisposable {
  readonly tally = new Tally();
  readonly logs: Record<string, unknown>[] = [];
  /** Tunnels opened, and each one's `release(clean)` once the mapping let it go. */
  opened = 0;
  readonly released: boolean[] = [];
  /** Datagrams the provider received, over all tunnels. */
  received = 0;
  gate: Promise<void> | undefined;
  refuse = false;
  readonly map: UdpMap;
  readonly clients: UdpClient[] = [];
  #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  #serving: Promise<void>[] = [];
  #accepting: Promise<void>;

  private constructor(readonly port: number, idleMs: number, maxFlows: number, provide: Provide) {
    this.#accepting = (async () => {
      for await (const conn of this.#listener) this.#serving.push(this.#serve(conn, provide));
    })();
    this.map = new UdpMap({
      ip: "127.0.0.1",
      port,
      idleMs,
      maxFlows,
      log: new Logger("agent", { sink: (l) => this.logs.push(JSON.parse(l)) }),
      mesh: "m",
      label: "udp/echo",
      open: (alive) => this.#open(alive),
      state: this.tally,
    });
    this.map.listen();
  }

  static async start(opts: { idleMs?: number; maxFlows?: number; provide?: Provide } = {}) {
    return new Rig(
      await freePort(),
      opts.idleMs ?? 60_000,
      opts.maxFlows ?? 16,
      opts.provide ?? "echo",
    );
  }

  client(): UdpClient {
    const c = new UdpClient();
    this.clients.push(c);
    return c;
  }

  async #open(_alive: () => boolean): Promise<OpenTunnel> {
    await this.gate;
    if (this.refuse) throw new Error("provider refused");
    const { port } = this.#listener.addr as Deno.NetAddr;
    const leg: DatagramLeg = datagramLeg(
      connLeg(await Deno.connect({ hostname: "127.0.0.1", port })),
    );
    this.opened++;
    return { leg, datagrams: leg, peer: PEER, release: (clean) => this.released.push(clean) };
  }

  /** One tunnel at the provider: echo or count each datagram; answer the end frame with its own. */
  async #serve(conn: Deno.Conn, provide: Provide): Promise<void> {
    const leg = datagramLeg(connLeg(conn));
    try {
      while (true) {
        const d = await leg.read();
        if (d === null) break;
        this.received++;
        if (provide === "echo") await leg.write(d);
      }
      await leg.closeWrite();
    } catch { /* the mapping aborted the tunnel */ }
    leg.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const c of this.clients) c.close();
    await this.map.close();
    // Every tunnel let go (close() aborts them; their ends finish in the background).
    await until(() => this.released.length === this.opened, "every tunnel released");
    this.#listener.close();
    await this.#accepting.catch(() => {});
    await Promise.all(this.#serving);
  }
}

Deno.test("a udp mapping keeps at most maxFlows flows: a new client past the cap is dropped and counted", async () => {
  await using rig = await Rig.start({ maxFlows: 2 });
  const [a, b, c] = [rig.client(), rig.client(), rig.client()];
  assert.deepEqual(await a.ask(new Uint8Array([1]), rig.port), new Uint8Array([1]));
  assert.deepEqual(await b.ask(new Uint8Array([2]), rig.port), new Uint8Array([2]));
  assert.equal(rig.map.flows, 2);
  await c.send(new Uint8Array([3]), rig.port);
  await c.send(new Uint8Array([4]), rig.port);
  await until(() => rig.tally.dropped === 2, "the third client's datagrams counted as dropped");
  assert.equal(rig.opened, 2, "no tunnel for a client past the cap");
  assert.equal(rig.map.flows, 2);
  assert.equal(await c.receive(200), null, "an answer to a client past the cap");
  assert.equal(rig.logs.filter((l) => l.msg === "udp flow cap reached").length, 1);
  // The clients inside the cap are still served.
  assert.deepEqual(await a.ask(new Uint8Array([5]), rig.port), new Uint8Array([5]));
  assert.equal(rig.tally.state("udp/echo").open, 2);
});

Deno.test("a flow queues at most FLOW_QUEUE_DATAGRAMS while its tunnel opens; the excess is its own loss, counted", async () => {
  await using rig = await Rig.start({ provide: "count" });
  let open!: () => void;
  rig.gate = new Promise((r) => (open = r));
  const flooder = rig.client();
  const sent = FLOW_QUEUE_DATAGRAMS + 20;
  for (let i = 0; i < sent; i++) {
    await flooder.send(new Uint8Array([i & 255]), rig.port);
    // Let the mapping take each burst from the kernel before the next (no loss to a full buffer).
    if (i % 32 === 31) await until(() => backlog(rig.port) === 0, "the mapping reading");
  }
  await until(() => backlog(rig.port) === 0, "the mapping reading");
  assert.equal(rig.tally.dropped, 20, "datagrams past the queue's bound");
  // Another client has its own flow and queue: the flood costs it nothing.
  const other = rig.client();
  await other.send(new Uint8Array([9]), rig.port);
  await until(() => backlog(rig.port) === 0, "the mapping reading");
  assert.equal(rig.tally.dropped, 20);
  open();
  await until(() => rig.received === FLOW_QUEUE_DATAGRAMS + 1, "the queued datagrams delivered");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(rig.received, FLOW_QUEUE_DATAGRAMS + 1, "more delivered than the queue holds");
});

Deno.test("a flow queues at most FLOW_QUEUE_BYTES while its tunnel opens", async () => {
  await using rig = await Rig.start({ provide: "count" });
  let open!: () => void;
  rig.gate = new Promise((r) => (open = r));
  const c = rig.client();
  const fit = Math.floor(FLOW_QUEUE_BYTES / MAX_DATAGRAM_BYTES);
  assert.ok(fit < FLOW_QUEUE_DATAGRAMS, "the byte bound comes first with the largest datagrams");
  const big = new Uint8Array(MAX_DATAGRAM_BYTES);
  for (let i = 0; i < fit + 2; i++) {
    await c.send(big, rig.port);
    await until(() => backlog(rig.port) === 0, "the mapping reading");
  }
  assert.equal(rig.tally.dropped, 2, "datagrams past the queue's byte bound");
  open();
  await until(() => rig.received === fit, "the queued datagrams delivered");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(rig.received, fit);
});

Deno.test("a flow ends cleanly after idleMs without a datagram, and its client then gets a fresh one", async () => {
  await using rig = await Rig.start({ idleMs: 150 });
  const c = rig.client();
  assert.deepEqual(await c.ask(new Uint8Array([1, 2]), rig.port), new Uint8Array([1, 2]));
  assert.equal(rig.tally.state("udp/echo").open, 1);
  await until(() => rig.released.length === 1, "the idle flow ended");
  assert.deepEqual(rig.released, [true], "an idle end is clean (end frames both ways)");
  assert.equal(rig.map.flows, 0);
  assert.equal(rig.tally.state("udp/echo").open, 0);
  assert.deepEqual(await c.ask(new Uint8Array([3]), rig.port), new Uint8Array([3]));
  assert.equal(rig.opened, 2, "a new tunnel for the client's next datagram");
  assert.equal(rig.tally.dropped, 0);
});

Deno.test("a flow whose tunnel could not open drops its client's datagrams, counted, without retrying until the hold passes", async () => {
  await using rig = await Rig.start();
  rig.refuse = true;
  const c = rig.client();
  await c.send(new Uint8Array([1]), rig.port);
  await until(() => rig.tally.dropped === 1, "the queued datagram of the failed flow counted");
  for (let i = 0; i < 3; i++) await c.send(new Uint8Array([2]), rig.port);
  await until(() => rig.tally.dropped === 4, "datagrams during the hold counted");
  assert.equal(rig.opened, 0);
  assert.equal(rig.logs.filter((l) => l.msg === "udp flow failed").length, 1, "one attempt");
  rig.refuse = false;
  // After the hold (FAILED_HOLD_MS) the client's next datagram tries again.
  const answer = await (async () => {
    for (let i = 0; i < 40; i++) {
      const got = await c.ask(new Uint8Array([3]), rig.port, 100);
      if (got) return got;
    }
    return null;
  })();
  assert.deepEqual(answer, new Uint8Array([3]));
  assert.equal(rig.opened, 1);
});
