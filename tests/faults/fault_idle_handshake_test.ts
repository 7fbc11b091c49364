/**
 * 500 TCP connections to each of the hub's ports (HTTP/2 and data) that
 * never send a byte, from another loopback address (127.0.0.2, a stranger):
 * agents still join, publish and tunnel, the HTTP/2 port drops the idle
 * sockets after its handshake timeout, and the plain data port closes every
 * one of them (refused at once past the per-address cap, the rest at the
 * ticket deadline).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { eventually, Harness, hubDataPort, issueUser } from "../fixtures/harness.ts";
import { endpointSeenBy, mapEcho, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";

const IDLE = 500;
const STRANGER = "127.0.0.2";

/** Opens `n` TCP connections from `STRANGER` that send nothing; tracks which the peer closed. */
async function idleSockets(port: number, n: number) {
  const sockets: net.Socket[] = [];
  let closed = 0;
  await Promise.all(Array.from({ length: n }, () =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress: STRANGER });
      sockets.push(s);
      s.on("error", () => {});
      s.once("connect", () => resolve());
      s.once("close", () => {
        closed++;
        resolve();
      });
    })));
  return {
    get closed() {
      return closed;
    },
    destroy: () => sockets.forEach((s) => s.destroy()),
  };
}

Deno.test("500 idle connections that never finish a TLS handshake keep no agent out", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const dataPort = await hubDataPort(hub);

  const opened = performance.now();
  const control = await idleSockets(hub.port, IDLE);
  const data = await idleSockets(dataPort, IDLE);
  try {
    const [alice, bob] = await Promise.all(
      ["alice", "bob"].map(async (u) =>
        startJoinedAgent(h, hub.address, await issueUser(ca.url, u))
      ),
    );
    const port = await mapEcho(alice, bob, target.port);
    // Many tunnels at once, so some take warm data connections through the data port.
    await Promise.all(Array.from({ length: 20 }, () => echoRoundTrip(port)));
    assert.equal((await endpointSeenBy(alice, bob.endpointId))?.online, true);

    await eventually(
      () => control.closed === IDLE,
      60_000,
      "the HTTP/2 port drops idle handshakes",
    );
    await eventually(() => data.closed === IDLE, 60_000, "the data port closes idle sockets");
    console.log(
      `${IDLE} idle sockets on each port closed by the hub within ` +
        `${Math.round(performance.now() - opened)} ms`,
    );
    await echoRoundTrip(port);
    assert.equal(hub.exited, false);
  } finally {
    control.destroy();
    data.destroy();
  }
});

Deno.test("neighbours on the agents' own address holding data connections without tickets keep no tunnel from working", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const dataPort = await hubDataPort(hub);
  const [aliceFiles, bobFiles] = await Promise.all(
    ["alice", "bob"].map((u) => issueUser(ca.url, u)),
  );

  // 100 idle connections from 127.0.0.1 (neighbours behind the agents' own NAT address).
  const neighbours = await Promise.all(
    Array.from({ length: 100 }, () => Deno.connect({ hostname: "127.0.0.1", port: dataPort })),
  );
  try {
    const [alice, bob] = await Promise.all(
      [aliceFiles, bobFiles].map((f) => startJoinedAgent(h, hub.address, f)),
    );
    const port = await mapEcho(alice, bob, target.port);
    // Every tunnel works, also those that need fresh pairs (10 at once).
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 10 }, () => echoRoundTrip(port)));
    }
  } finally {
    for (const c of neighbours) c.close();
  }
});
