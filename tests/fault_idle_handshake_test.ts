/**
 * 500 TCP connections to each of the hub's ports (HTTP/2 and data) that
 * never start a TLS handshake, from another loopback address (127.0.0.2, a
 * stranger): agents still join, publish and tunnel, and the HTTP/2 port
 * drops the idle sockets after its handshake timeout. How many of the data
 * port's idle sockets the hub has closed is printed, not asserted: in Deno
 * 2.9.3 `TlsConn.close()` on a server connection whose handshake never
 * started waits for that handshake, so the socket stays open until the peer
 * goes away (TODO(#11): the hub cannot release them yet). The data port's
 * per-address limit keeps them from counting against anyone else.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { eventually, Harness, issueUser } from "./harness.ts";
import { addPortMapping, addService, endpointSeenBy, startJoinedAgent } from "./mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "./net_helpers.ts";

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
  const dataLine = await hub.waitForLog((l) => l.msg === "data port listening");
  const dataPort = Number(String(dataLine.addr).split(":").pop());

  const opened = performance.now();
  const control = await idleSockets(hub.port, IDLE);
  const data = await idleSockets(dataPort, IDLE);
  try {
    const [alice, bob] = await Promise.all(
      ["alice", "bob"].map(async (u) =>
        startJoinedAgent(h, hub.address, await issueUser(ca.url, u))
      ),
    );
    await addService(bob, "echo", target.port, ["alice"]);
    const port = await freePort();
    await addPortMapping(alice, port, "echo");
    await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "mapping works");
    // Many tunnels at once, so some take warm data connections through the data port.
    await Promise.all(Array.from({ length: 20 }, () => echoRoundTrip(port)));
    assert.equal((await endpointSeenBy(alice, bob.endpointId))?.online, true);

    await eventually(
      () => control.closed === IDLE,
      60_000,
      "the HTTP/2 port drops idle handshakes",
    );
    console.log(
      `${IDLE} idle handshakes on the HTTP/2 port closed by the hub within ` +
        `${Math.round(performance.now() - opened)} ms; on the data port the hub has closed ` +
        `${data.closed} of ${IDLE}`,
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
  const dataLine = await hub.waitForLog((l) => l.msg === "data port listening");
  const dataPort = Number(String(dataLine.addr).split(":").pop());
  const [aliceFiles, bobFiles] = await Promise.all(
    ["alice", "bob"].map((u) => issueUser(ca.url, u)),
  );

  // 100 TLS connections from 127.0.0.1 (as the warm pools of a dozen agents behind one NAT).
  const neighbours = await Promise.all(Array.from({ length: 100 }, async () => {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: dataPort,
      caCerts: [aliceFiles.ca],
    });
    await conn.handshake();
    return conn;
  }));
  try {
    const [alice, bob] = await Promise.all(
      [aliceFiles, bobFiles].map((f) => startJoinedAgent(h, hub.address, f)),
    );
    await addService(bob, "echo", target.port, ["alice"]);
    const port = await freePort();
    await addPortMapping(alice, port, "echo");
    await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "mapping works");
    // Every tunnel works, also those that take a warm data connection.
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 10 }, () => echoRoundTrip(port)));
    }
    assert.equal(
      hub.logs.filter((l) => l.msg === "data connection refused: too many waiting").length,
      0,
    );
  } finally {
    for (const c of neighbours) c.close();
  }
});
