/**
 * The hub's liveness sweep over real HTTP/2 sessions: an expired
 * certificate's session is closed, a due session is PINGed once per interval
 * unless its peer PINGed lately, and a peer that leaves a PING unanswered is
 * dropped.
 */
import assert from "node:assert/strict";
import type { ServerHttp2Session } from "node:http2";
import tls from "node:tls";
import { Logger } from "@ztm/shared/log";
import { withDeadline } from "../tests/fixtures/ca_helpers.ts";
import { startH2Server } from "../tests/fixtures/h2_server.ts";
import { newLeaf } from "../tests/fixtures/test_pki.ts";
import type { SessionState } from "./control.ts";
import { respondJson } from "./respond.ts";
import { pingDueSessions } from "./session_ping.ts";

const LIMITS = { pingIntervalMs: 60_000, pingTimeoutMs: 10_000 };

function stateOf(notAfter = Date.now() + 3_600_000): SessionState {
  return {
    peer: {
      user: "alice",
      serial: "0a",
      fingerprint: "f",
      address: "127.0.0.1:1",
      spki: new Uint8Array(),
      notAfter,
    },
    endpointId: `ep-${"a".repeat(32)}`,
    controls: 0,
    counted: true,
    pingDueAt: 0,
    peerPingAt: 0,
  };
}

function recorder() {
  const logs: Record<string, unknown>[] = [];
  return { logs, log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }) };
}

const closed = (session: ServerHttp2Session) =>
  withDeadline(
    new Promise((resolve) => session.destroyed ? resolve(true) : session.once("close", resolve)),
    5_000,
    "the session closing",
  );

Deno.test("a session whose certificate has expired is closed by the sweep, and says so", async () => {
  await using server = await startH2Server((s) => respondJson(s, 200, {}));
  await using client = await server.client();
  assert.equal((await client.request("GET", "/")).status, 200);
  const session = await server.nextSession();
  const { logs, log } = recorder();
  const sessions = new Map([[session, stateOf(Date.now() - 1)]]);
  pingDueSessions(sessions, LIMITS, log);
  await closed(session);
  assert.deepEqual(logs.map((l) => [l.level, l.msg, l.user, l.serial]), [
    ["warn", "session closed: certificate expired", "alice", "0a"],
  ]);
});

Deno.test("a due session is PINGed once per interval, and not at all while its peer PINGs the hub", async () => {
  await using server = await startH2Server((s) => respondJson(s, 200, {}));
  await using client = await server.client();
  let pinged = 0;
  client.session.on("ping", () => pinged++);
  // A round trip after the sweep: a PING the sweep sent arrives before the answer.
  const roundTrip = async () => assert.equal((await client.request("GET", "/")).status, 200);
  await roundTrip();
  const session = await server.nextSession();
  const { logs, log } = recorder();
  const state = stateOf();
  const sessions = new Map([[session, state]]);
  const before = Date.now();
  pingDueSessions(sessions, LIMITS, log);
  assert.ok(state.pingDueAt >= before + LIMITS.pingIntervalMs, "the next PING is an interval away");
  await roundTrip();
  assert.equal(pinged, 1);
  pingDueSessions(sessions, LIMITS, log); // not due yet
  await roundTrip();
  assert.equal(pinged, 1);
  state.pingDueAt = 0;
  state.peerPingAt = Date.now(); // the peer PINGed just now: it is alive
  pingDueSessions(sessions, LIMITS, log);
  assert.ok(state.pingDueAt > Date.now(), "its time moves on all the same");
  await roundTrip();
  assert.equal(pinged, 1);
  assert.equal(session.destroyed, false);
  assert.deepEqual(logs, []);
});

Deno.test("a peer that leaves the hub's PING unanswered is dropped after the PING timeout", async () => {
  await using server = await startH2Server(() => {});
  const leaf = await newLeaf(server.ca, { name: "alice" });
  // A bare HTTP/2 peer: the connection preface and empty SETTINGS, then silence (no PING ACK).
  const socket = tls.connect({
    host: "127.0.0.1",
    port: server.port,
    servername: "localhost",
    ca: server.ca.pem,
    cert: leaf.certificate,
    key: leaf.privateKey,
    ALPNProtocols: ["h2"],
  });
  socket.on("error", () => {});
  try {
    await new Promise((resolve) => socket.once("secureConnect", resolve));
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    socket.write(Uint8Array.of(0, 0, 0, 4, 0, 0, 0, 0, 0));
    const session = await withDeadline(server.nextSession(), 5_000, "the session");
    const { logs, log } = recorder();
    pingDueSessions(new Map([[session, stateOf()]]), { ...LIMITS, pingTimeoutMs: 100 }, log);
    await closed(session);
    assert.deepEqual(logs.map((l) => [l.msg, l.user]), [
      ["peer unresponsive; session dropped", "alice"],
    ]);
  } finally {
    socket.destroy();
  }
});
