/**
 * Providers whose target misbehaves: nothing listens there (dead), the
 * address swallows the connect (black-holed), or it accepts and never
 * answers (silent). Clients of the mapping get a close instead of a hang,
 * and after many attempts the provider agent holds no more descriptors than
 * before (and the memory figures are printed), so failed opens leak nothing.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { eventually, Harness } from "../fixtures/harness.ts";
import {
  addPortMapping,
  addService,
  type MeshAgent,
  startMeshOf,
} from "../fixtures/mesh_fixture.ts";
import {
  echoRoundTrip,
  freePort,
  openConnection,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";
import { awaitEnding, openFds, rssKiB, spread } from "../fixtures/fault_helpers.ts";
import { PAIR_IDLE_MS } from "@ztm/shared/peer_protocol";

/**
 * Descriptors an agent may hold beyond its idle count once its pair
 * connections went idle and closed ({@link PAIR_IDLE_MS}): a few. A leak grows
 * with the attempts (100 here), so this bound tells it apart.
 */
const FD_SLACK = 12;
/** How long the idle pairs of a burst take to close (the sweep runs every 5 s at most). */
const SETTLE_MS = PAIR_IDLE_MS + 20_000;

/** A server that accepts and never writes; it closes only when its client does. */
function startSilentServer(): Promise<net.Server & { accepted: number; open: Set<net.Socket> }> {
  const open = new Set<net.Socket>();
  const server = Object.assign(
    net.createServer((s) => {
      server.accepted++;
      open.add(s);
      s.on("error", () => {});
      s.on("close", () => open.delete(s));
      s.resume();
    }),
    { accepted: 0, open },
  );
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/**
 * A black-holed address on loopback: a listener that never accepts, its
 * accept queue filled until new connects get no answer (the kernel drops
 * their SYNs), as a firewall that drops packets would.
 */
async function startBlackHole(): Promise<AsyncDisposable & { port: number }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const fillers: net.Socket[] = [];
  const connects = (n: number) =>
    Promise.all(Array.from({ length: n }, () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port });
        fillers.push(s);
        s.on("error", () => resolve(false));
        s.once("connect", () => resolve(true));
        setTimeout(() => resolve(false), 500);
      })));
  while ((await connects(64)).every((ok) => ok)) {
    if (fillers.length > 8_192) throw new Error("the accept queue never filled");
  }
  return {
    port,
    [Symbol.asyncDispose]() {
      for (const s of fillers) s.destroy();
      listener.close();
      return Promise.resolve();
    },
  };
}

/** Runs `task` `total` times, `width` at once. */
async function inBatches<T>(total: number, width: number, task: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let done = 0; done < total; done += width) {
    out.push(...await Promise.all(Array.from({ length: Math.min(width, total - done) }, task)));
  }
  return out;
}

/** Waits until `agent` holds no more descriptors than `before` (plus slack); returns what it holds. */
async function settledFds(agent: MeshAgent, before: number): Promise<number> {
  const pid = agent.proc.child.pid;
  return await eventually(
    () => (openFds(pid) <= before + FD_SLACK ? openFds(pid) : 0),
    SETTLE_MS,
    `${agent.endpointName} back to ${before} (+${FD_SLACK}) descriptors`,
  );
}

Deno.test("a dead or black-holed target gets clients a prompt close and the provider leaks nothing", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  await addService(bob, "echo", echo.port, ["alice"]);
  await addService(bob, "dead", await freePort(), ["alice"]);
  await using hole = await startBlackHole();
  await addService(bob, "holed", hole.port, ["alice"]);
  const [toEcho, toDead, toHoled] = [await freePort(), await freePort(), await freePort()];
  await addPortMapping(alice, toEcho, "echo");
  await addPortMapping(alice, toDead, "dead");
  await addPortMapping(alice, toHoled, "holed");
  await eventually(() => echoRoundTrip(toEcho).then(() => true), 15_000, "echo mapping works");

  const pid = bob.proc.child.pid;
  const fdsBefore = openFds(pid);
  const rssBefore = rssKiB(pid);
  const dead = await inBatches(60, 10, () => awaitEnding(toDead));
  const holedEnds = await inBatches(40, 40, () => awaitEnding(toHoled));
  for (const e of [...dead, ...holedEnds]) assert.notEqual(e.how, "hang");
  // The provider still serves the good target.
  await echoRoundTrip(toEcho);
  const fdsAfter = await settledFds(bob, fdsBefore);
  console.log(
    `dead target: 60 clients closed after min/median/max ${spread(dead.map((e) => e.ms))} ms; ` +
      `black-holed: 40 closed after ${spread(holedEnds.map((e) => e.ms))} ms; provider fds ` +
      `${fdsBefore} → ${fdsAfter}, RSS ${rssBefore} → ${rssKiB(pid)} KiB`,
  );
});

Deno.test("clients that give up on a silent target leave the provider holding nothing", async () => {
  await using h = new Harness();
  const silent = await startSilentServer();
  try {
    const m = await startMeshOf(h, ["alice", "bob"]);
    const { alice, bob } = m.agents;
    await addService(bob, "silent", (silent.address() as net.AddressInfo).port, ["alice"]);
    const port = await freePort();
    await addPortMapping(alice, port, "silent");
    // Warm up once so the fd baseline includes the agent's warm data connections.
    const first = await openConnection(port);
    await eventually(() => silent.accepted === 1, 15_000, "the silent target reached");
    first.close();
    await eventually(() => silent.open.size === 0, 15_000, "the first connection released");

    const pid = bob.proc.child.pid;
    const fdsBefore = openFds(pid);
    const rssBefore = rssKiB(pid);
    const total = 100;
    // Clients send a request, wait (20 at a time) until all reached the target, and give up.
    for (let batch = 0; batch < total / 20; batch++) {
      const conns = await Promise.all(Array.from({ length: 20 }, () => openConnection(port)));
      for (const c of conns) {
        c.socket.on("error", () => {});
        c.socket.write(randomBytes(512));
      }
      await eventually(() => silent.open.size === 20, 15_000, "20 clients reached the target");
      for (const c of conns) c.close();
      await eventually(() => silent.open.size === 0, 20_000, "provider released the target");
    }
    assert.equal(silent.accepted, total + 1);
    // Every connection the provider opened to the target is closed again.
    await eventually(() => silent.open.size === 0, 20_000, "provider released the target");
    const fdsAfter = await settledFds(bob, fdsBefore);
    const aliceFds = openFds(alice.proc.child.pid);
    console.log(
      `silent target, ${total} abandoned connections: provider fds ${fdsBefore} → ${fdsAfter}, ` +
        `RSS ${rssBefore} → ${rssKiB(pid)} KiB; caller agent fds ${aliceFds}`,
    );
  } finally {
    await new Promise((r) => silent.close(r));
    for (const s of silent.open) s.destroy();
  }
});
