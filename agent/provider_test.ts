/**
 * The provider side of tunnels, on real loopback targets (TCP and UDP) and
 * real socket legs: who may use a service, refusals with their codes and a
 * per-user limit past which they are answered 429 without a line each, an
 * unreachable target, relays that count and end cleanly, a UDP flow that
 * ends when idle, and live connections cut when a strict rule narrows or the
 * provider closes.
 */
import assert from "node:assert/strict";
import type { ZtmError } from "@ztm/shared/errors";
import { connLeg, type Leg } from "@ztm/shared/splice";
import { echoServer } from "./peer/_fixture.ts";
import { PairLink } from "./peer/pair_link.ts";
import { mayUse, Provider, REFUSAL_LIMIT } from "./provider.ts";
import { closeAll, deadline, memoryLog, readAll, tcpPair } from "./proxy/_fixture.ts";
import type { LocalService } from "./runtime.ts";
import { TunnelStates } from "./tunnel_state.ts";
import { startUdpEcho } from "../tests/fixtures/udp_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const ALICE = { user: "alice", endpoint: "alice-ep" };

function service(over: Partial<LocalService> = {}): LocalService {
  return {
    proto: "tcp",
    name: "echo",
    host: "127.0.0.1",
    port: 9,
    users: ["alice"],
    strict: false,
    ...over,
  };
}

function provider(services: LocalService[]) {
  const { log, lines } = memoryLog();
  const p = new Provider({ owner: "bob", log, mesh: "m" });
  p.states = new TunnelStates();
  p.setServices(services);
  return { p, lines, states: p.states };
}

/** A tunnel leg on a loopback connection: the provider gets `leg`, the test plays the caller on `caller`. */
async function tunnelLeg(): Promise<{ leg: Leg; caller: Deno.TcpConn; near: Deno.TcpConn }> {
  const [caller, near] = await tcpPair();
  return { leg: connLeg(near), caller, near };
}

Deno.test("a service is its owner's and root's, and the users it names or * opens it to", () => {
  const s = service({ users: ["carol"] });
  assert.equal(mayUse(s, "bob", "bob"), true);
  assert.equal(mayUse(s, "bob", "root"), true);
  assert.equal(mayUse(s, "bob", "carol"), true);
  assert.equal(mayUse(s, "bob", "alice"), false);
  assert.equal(mayUse(service({ users: ["*"] }), "bob", "anyone"), true);
  assert.equal(mayUse(service({ users: [] }), "bob", "alice"), false);
});

Deno.test("unknown services and users not allowed are refused, each with one line; known ones counted", async () => {
  const { p, lines, states } = provider([service()]);
  assert.throws(
    () => p.precheck({ proto: "tcp", name: "nope" }, ALICE),
    (e: ZtmError) => e.status === 404 && e.code === "unknown_service",
  );
  assert.throws(
    () => p.precheck({ proto: "udp", name: "echo" }, ALICE),
    (e: ZtmError) => e.code === "unknown_service",
    "the protocol is part of the service",
  );
  await assert.rejects(
    p.serve({ proto: "tcp", name: "echo" }, { user: "mallory", endpoint: "m-ep" }),
    (e: ZtmError) =>
      e.status === 403 && e.code === "access_denied" &&
      e.message === 'User "mallory" may not use service tcp/echo',
  );
  const refused = lines.filter((l) => l.msg === "tunnel refused");
  assert.equal(refused.length, 3);
  assert.deepEqual(refused.map((l) => l.status), [404, 404, 403]);
  // Made-up names do not grow the table; a real service counts its refusal.
  assert.deepEqual([...states.services()].map(([k]) => k), ["tcp/echo"]);
  assert.equal(states.service({ proto: "tcp", name: "echo" }).lastError?.code, "access_denied");
  p.precheck({ proto: "tcp", name: "echo" }, ALICE); // allowed: no throw
  assert.equal(p.liveConnections, 0, "a check dials nothing");
});

Deno.test("past the refusal limit a user is answered 429 without a check or a line each; others go on", () => {
  const { p, lines } = provider([service()]);
  const mallory = { user: "mallory", endpoint: "m-ep" };
  for (let i = 0; i < REFUSAL_LIMIT; i++) {
    assert.throws(() => p.precheck({ proto: "tcp", name: `x${i}` }, mallory), {
      code: "unknown_service",
    });
  }
  for (let i = 0; i < 5; i++) {
    assert.throws(
      () => p.precheck({ proto: "tcp", name: "echo" }, mallory),
      (e: ZtmError) => e.status === 429 && e.code === "too_many_refusals",
    );
  }
  assert.equal(lines.filter((l) => l.msg === "tunnel refused").length, REFUSAL_LIMIT);
  const limited = lines.filter((l) => l.msg === "tunnel refusals limited");
  assert.equal(limited.length, 1);
  assert.equal(limited[0].user, "mallory");
  p.precheck({ proto: "tcp", name: "echo" }, ALICE);
});

Deno.test("an allowed tunnel reaches its target, relays both ways and counts; an unreachable target is a 502", async () => {
  const echo = echoServer();
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = dead.addr.port;
  dead.close();
  const { p, lines, states } = provider([
    service({ port: echo.port }),
    service({ name: "down", port: deadPort }),
  ]);
  const t = await tunnelLeg();
  try {
    const relay = await p.serve({ proto: "tcp", name: "echo" }, ALICE);
    assert.equal(echo.accepted, 1);
    const relaying = relay(t.leg);
    assert.equal(p.liveConnections, 1);
    await t.caller.write(enc.encode("ping"));
    await t.caller.closeWrite();
    assert.equal(dec.decode(await deadline(readAll(t.caller), 5_000, "the echo")), "ping");
    assert.equal(await deadline(relaying, 5_000, "the relay's end"), true);
    assert.equal(p.liveConnections, 0);
    const tally = states.service({ proto: "tcp", name: "echo" });
    assert.equal(tally.connections, 1);
    assert.equal(tally.bytesUp, 4);
    assert.equal(tally.bytesDown, 4);
    assert.ok(lines.some((l) => l.msg === "tunnel accepted" && l.endpoint === "alice-ep"));

    await assert.rejects(
      p.serve({ proto: "tcp", name: "down" }, ALICE),
      (e: ZtmError) =>
        e.status === 502 && e.code === "target_unreachable" &&
        e.message.startsWith(`Service tcp/down target 127.0.0.1:${deadPort} is unreachable`),
    );
    assert.equal(
      states.service({ proto: "tcp", name: "down" }).lastError?.code,
      "target_unreachable",
    );
  } finally {
    closeAll(t.caller, t.near);
    p.close();
    echo.close();
  }
});

Deno.test("narrowing a strict service cuts the live connections of users it no longer allows", async () => {
  const echo = echoServer();
  const strict = service({ port: echo.port, users: ["alice", "carol"], strict: true });
  const loose = service({ name: "loose", port: echo.port, users: ["alice"] });
  const { p, lines } = provider([strict, loose]);
  const alice = await tunnelLeg();
  const carol = await tunnelLeg();
  const looseLeg = await tunnelLeg();
  try {
    const a = (await p.serve(strict, ALICE))(alice.leg);
    const c = (await p.serve(strict, { user: "carol", endpoint: "c-ep" }))(carol.leg);
    const l = (await p.serve(loose, ALICE))(looseLeg.leg);
    assert.equal(p.liveConnections, 3);
    p.setServices([{ ...strict, users: ["carol"] }, { ...loose, users: [] }]);
    assert.equal(p.liveConnections, 2, "alice's strict connection is cut, the loose one kept");
    assert.equal(await deadline(a, 5_000, "alice's relay"), false);
    assert.ok(lines.some((x) => x.msg === "tunnel closed: access withdrawn" && x.user === "alice"));
    // Removing the strict service cuts all of its own.
    p.setServices([{ ...loose, users: [] }]);
    assert.equal(p.liveConnections, 1);
    assert.equal(await deadline(c, 5_000, "carol's relay"), false);
    p.close();
    assert.equal(p.liveConnections, 0);
    assert.equal(await deadline(l, 5_000, "the loose relay"), false);
  } finally {
    closeAll(alice.caller, alice.near, carol.caller, carol.near, looseLeg.caller, looseLeg.near);
    p.close();
    echo.close();
  }
});

Deno.test("a UDP flow relays datagrams to its target and ends cleanly once idle", async () => {
  await using target = startUdpEcho();
  const { p, lines, states } = provider([
    service({ proto: "udp", name: "dns", port: target.port }),
  ]);
  const [a, b] = await tcpPair();
  const near = new PairLink(a);
  const far = new PairLink(b);
  try {
    const relay = await p.serve({ proto: "udp", name: "dns", idleMs: 1 }, ALICE);
    const flow = relay(near.datagrams());
    assert.equal(p.liveConnections, 1);
    const caller = far.datagrams();
    await caller.writeBatch([enc.encode("q1"), enc.encode("q2")]);
    const got: string[] = [];
    while (true) {
      // After the answers, the idle flow (at least 100 ms: 1 is raised) sends its end.
      const d = await deadline(caller.read(), 5_000, "a datagram");
      if (d === null) break;
      got.push(dec.decode(d));
    }
    assert.deepEqual(got, ["q1", "q2"]);
    await caller.closeWrite(); // the caller's end answers the provider's
    assert.equal(await deadline(flow, 5_000, "the flow's end"), true);
    assert.equal(p.liveConnections, 0);
    assert.equal(target.received, 2);
    assert.ok(lines.some((l) => l.msg === "udp flow accepted"));
    assert.equal(states.service({ proto: "udp", name: "dns" }).state("s").dropped, 0);
  } finally {
    near.close();
    far.close();
    p.close();
  }
});
