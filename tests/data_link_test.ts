/**
 * Data links (issue "Benchmarks and a fast data path"): a data connection
 * whose tunnel ended cleanly stays bound to the control session that minted
 * its ticket and carries the next tunnel on an `open` line — no new
 * handshake, ticket or HTTP/2 request. The hub still decides everything: a
 * refused `open` is answered on the link and reaches no target, garbage
 * closes the link, and a link dies with its session and its certificate.
 *
 * Alice is a hand-built client (`data_fixture.ts`); bob is a real agent whose
 * target is a counting echo server.
 */
import assert from "node:assert/strict";
import { withDeadline } from "./ca_helpers.ts";
import {
  askTicket,
  closeQuietly,
  type DataFixture,
  END_FRAME,
  exchangeConn,
  hubStatus,
  mappedEcho,
  presentTicket,
  readExactly,
  readToEnd,
  SERVICE,
  startDataFixture,
  writeAll,
} from "./data_fixture.ts";
import { eventually, Harness, issueUser } from "./harness.ts";
import { HubClient, userTls } from "./hub_client.ts";
import { addService, startMeshOf } from "./mesh_fixture.ts";
import {
  echoRoundTrip,
  type EchoServer,
  equalBytes,
  IO_TIMEOUT_MS,
  randomBytes,
  startEchoServer,
} from "./net_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Ends the tunnel on `conn` as an agent does (an end frame each way) and keeps the connection. */
async function endTunnel(conn: Deno.Conn): Promise<void> {
  await writeAll(conn, END_FRAME);
  const back = await withDeadline(readExactly(conn, 4), IO_TIMEOUT_MS, "the tunnel's end frame");
  assert.deepEqual(back, END_FRAME, "the far side's end frame");
}

/** Writes one JSON line on a link and reads the hub's one-line answer. */
async function ask(conn: Deno.Conn, msg: unknown): Promise<Record<string, unknown>> {
  await writeAll(conn, encoder.encode(JSON.stringify(msg) + "\n"));
  let line = "";
  const byte = new Uint8Array(1);
  await withDeadline(
    (async () => {
      while (true) {
        const n = await conn.read(byte);
        if (n === null) throw new Error(`link closed after "${line}"`);
        if (byte[0] === 10) return;
        line += decoder.decode(byte);
      }
    })(),
    IO_TIMEOUT_MS,
    "the hub's answer on the link",
  );
  return JSON.parse(line);
}

/** An `open` line for `name` on bob's endpoint. */
function openOf(f: DataFixture, name = SERVICE) {
  return { type: "open", endpoint: f.bob.endpointId, proto: "tcp", name };
}

/** A link: a ticketed tunnel carried once and ended cleanly. */
async function firstTunnel(f: DataFixture, echo: EchoServer): Promise<Deno.TlsConn> {
  const conn = await presentTicket(f, await askTicket(f, echo));
  const data = randomBytes(64 * 1024);
  assert.ok(equalBytes(await exchangeConn(conn, data), data), "the first tunnel's echo");
  await endTunnel(conn);
  return conn;
}

Deno.test("a data connection carries the next tunnel after a clean end, with no new ticket", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const conn = await firstTunnel(f, echo);
  try {
    for (let round = 2; round <= 4; round++) {
      assert.deepEqual(await ask(conn, openOf(f)), { type: "opened" }, `open #${round}`);
      // Bob connected to the target before accepting; the echo server counts it as it gets to it.
      await eventually(() => echo.accepted === round, 5_000, `target connection #${round}`);
      const data = randomBytes(256 * 1024);
      assert.ok(equalBytes(await exchangeConn(conn, data), data), `tunnel #${round} intact`);
      await endTunnel(conn);
    }
    await eventually(
      async () => echo.open === 0 && (await hubStatus(f.alice)).tunnels === 0,
      10_000,
      "every tunnel closed at the target and the hub",
    );
    // Alice's link and bob's (parked at the hub) are kept.
    assert.ok((await hubStatus(f.alice)).dataLinks >= 1);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("a refused open on a link gets the status, reaches no target, and keeps the link", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using secret = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  await addService(f.bob, "secret", secret.port, []); // bob's own: alice may not use it
  const conn = await firstTunnel(f, echo);
  try {
    const unknown = await ask(conn, openOf(f, "nope"));
    assert.equal(unknown.type, "error");
    assert.equal(unknown.status, 404, JSON.stringify(unknown));
    await eventually(
      async () => (await ask(conn, openOf(f, "secret"))).status === 403,
      10_000,
      "403 for bob's secret service",
    );
    assert.equal(secret.accepted, 0, "a refused caller reached the target");
    const offline = await ask(conn, { ...openOf(f), endpoint: "no-such-endpoint" });
    assert.equal(offline.status, 404, JSON.stringify(offline));

    // The link still works.
    assert.deepEqual(await ask(conn, openOf(f)), { type: "opened" });
    const data = randomBytes(4096);
    assert.ok(equalBytes(await exchangeConn(conn, data), data));
    await endTunnel(conn);
  } finally {
    closeQuietly(conn);
  }
  assert.equal(secret.accepted, 0);
});

Deno.test("garbage on an idle link closes it, and nothing reaches the target", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const cases: [string, Uint8Array][] = [
    ["not JSON", encoder.encode("hello\n")],
    ["an unknown type", encoder.encode(JSON.stringify({ type: "accept", sid: "x" }) + "\n")],
    ["frames instead of a line", new Uint8Array([0, 0, 0, 4, 1, 2, 3, 4, 10])],
    ["a 20 KiB line", encoder.encode("x".repeat(20 * 1024))],
  ];
  for (const [what, bytes] of cases) {
    const conn = await firstTunnel(f, echo);
    const accepted = echo.accepted;
    try {
      await writeAll(conn, bytes).catch(() => {});
      const end = await withDeadline(readToEnd(conn), IO_TIMEOUT_MS, `the hub closing: ${what}`);
      assert.equal(end.bytes, 0, `${what}: ${end.bytes} bytes came back`);
    } finally {
      closeQuietly(conn);
    }
    assert.equal(echo.accepted, accepted, `${what} reached the target`);
  }
});

Deno.test("an idle link dies with its control session and with its certificate", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);

  // Revoked: the CA's DELETE ends alice's session and her link with it.
  const conn = await firstTunnel(f, echo);
  const accepted = echo.accepted;
  try {
    const del = await fetch(`${f.mesh.ca.url}/api/certificates/alice`, { method: "DELETE" });
    assert.equal(del.status, 200, await del.text());
    const end = await withDeadline(readToEnd(conn), 10_000, "the hub closing the revoked link");
    assert.equal(end.bytes, 0);
    await writeAll(conn, encoder.encode(JSON.stringify(openOf(f)) + "\n")).catch(() => {});
  } finally {
    closeQuietly(conn);
  }
  assert.equal(echo.accepted, accepted, "an open on a revoked link reached the target");
});

Deno.test("an idle link closes when the session that minted its ticket closes", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const conn = await firstTunnel(f, echo);
  const accepted = echo.accepted;
  try {
    f.alice.session.destroy();
    const end = await withDeadline(readToEnd(conn), 10_000, "the hub closing the orphaned link");
    assert.equal(end.bytes, 0);
  } finally {
    closeQuietly(conn);
  }
  assert.equal(echo.accepted, accepted);
});

Deno.test("sequential connections through a mapping reuse data links instead of dialling", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const port = await mappedEcho(m, echo);
  await using carol = HubClient.connect(m.hub.port, userTls(await issueUser(m.ca.url, "carol")));
  const status = () => hubStatus(carol);
  const before = (await status()).dataConnections;
  const rounds = 60;
  for (let i = 0; i < rounds; i++) await echoRoundTrip(port, 1024);
  const after = await status();
  // Without links every tunnel takes two fresh data connections (one per side).
  const dialled = after.dataConnections - before;
  assert.ok(dialled < rounds / 2, `${dialled} data connections for ${rounds} tunnels`);
  assert.ok(after.dataLinks >= 2, `data links kept: ${after.dataLinks}`);
});
