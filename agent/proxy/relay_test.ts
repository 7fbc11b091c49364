/**
 * What the proxy's front ends share, over real loopback sockets: a refusal's
 * status and code (a `ZtmError`'s own, else 502), one counted log line per
 * refusal, and the relay that sends the bytes behind the handshake first,
 * splices both ways, counts them, and releases the tunnel once (clean or not).
 */
import assert from "node:assert/strict";
import { agentError } from "@ztm/shared/agent_api";
import { connLeg } from "@ztm/shared/splice";
import { Tally } from "../tunnel_state.ts";
import type { DialedTunnel } from "./mesh_dialer.ts";
import { logRefusal, type ProxyContext, refusalOf, relay } from "./relay.ts";
import { closeAll, deadline, memoryLog, readAll, tcpPair } from "./_fixture.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function context() {
  const { log, lines } = memoryLog();
  const tally = new Tally();
  let established = 0;
  const ctx: ProxyContext = {
    mesh: "m",
    log,
    tally,
    dial: () => Promise.reject(new Error("not dialled here")),
    established: () => void established++,
  };
  return { ctx, lines, tally, established: () => established };
}

/** A tunnel whose far end (`target`) is a loopback socket; `released` records each release. */
async function tunnel() {
  const [near, target] = await tcpPair();
  const released: boolean[] = [];
  const t: DialedTunnel = {
    leg: connLeg(near),
    release: (clean) => void released.push(clean),
    target: { proto: "tcp", service: "web", endpoint: "ep-1", user: "bob" },
  };
  return { t, near, target, released };
}

Deno.test("a refusal keeps a ZtmError's status and code; anything else is a 502 tunnel_failed", () => {
  assert.deepEqual(refusalOf(agentError("access_denied", "No")), {
    status: 403,
    code: "access_denied",
    message: "No",
  });
  assert.deepEqual(refusalOf(new Error("connection reset")), {
    status: 502,
    code: "tunnel_failed",
    message: "The tunnel failed: connection reset",
  });
});

Deno.test("a refusal is one log line and counts on the tally", () => {
  const { ctx, lines, tally } = context();
  const long = "x".repeat(300) + ".mesh";
  logRefusal(ctx, "CONNECT", long, refusalOf(agentError("unknown_service", "No such")));
  assert.equal(lines.length, 1);
  assert.equal(lines[0].msg, "proxy refused");
  assert.equal(lines[0].mesh, "m");
  assert.equal(lines[0].method, "CONNECT");
  assert.equal(lines[0].service, long.slice(0, 255), "the host is cut to 255 characters");
  assert.equal(lines[0].status, 404);
  assert.equal(lines[0].err, "No such");
  assert.equal(tally.lastError?.code, "unknown_service");
  assert.equal(tally.failures.get("unknown_service"), 1);
  // Without a tally the line is still written.
  logRefusal({ ...ctx, tally: undefined }, "GET", "h", refusalOf(new Error("e")));
  assert.equal(lines.length, 2);
});

Deno.test("the relay sends the bytes behind the handshake first, splices both ways, and releases clean", async () => {
  const { ctx, tally, established } = context();
  const [client, proxySide] = await tcpPair();
  const { t, target, released } = await tunnel();
  try {
    const relaying = relay(ctx, proxySide, t, enc.encode("FIRST "));
    assert.equal(established(), 1, "the setup deadline ends when the relay starts");
    await client.write(enc.encode("then more"));
    await client.closeWrite();
    const up = await deadline(readAll(target), 5_000, "the target's input");
    assert.equal(dec.decode(up), "FIRST then more");
    await target.write(enc.encode("answer"));
    await target.closeWrite();
    assert.equal(dec.decode(await deadline(readAll(client), 5_000, "the answer")), "answer");
    await deadline(relaying, 5_000, "the relay's end");
    assert.deepEqual(released, [true]);
    // The client's bytes after the handshake count up, the answer down; the tunnel is closed.
    assert.equal(tally.bytesUp, "then more".length);
    assert.equal(tally.bytesDown, "answer".length);
    assert.equal(tally.connections, 1);
    assert.equal(tally.open, 0);
  } finally {
    closeAll(client, proxySide, target);
  }
});

Deno.test("a tunnel that fails before the first bytes are sent is aborted, the client closed, and released unclean", async () => {
  const { ctx } = context();
  const [client, proxySide] = await tcpPair();
  const { t, near, target, released } = await tunnel();
  try {
    near.close(); // the tunnel is gone: writing the first bytes fails
    await deadline(relay(ctx, proxySide, t, enc.encode("hello")), 5_000, "the relay's end");
    assert.deepEqual(released, [false]);
    assert.equal((await deadline(readAll(client), 5_000, "the client's end")).byteLength, 0);
    assert.throws(() => proxySide.close(), Deno.errors.BadResource, "the client was closed");
  } finally {
    closeAll(client, proxySide, target);
  }
});
