/**
 * The control port's door on real loopback sockets: connections per address
 * before admission, the total under the descriptor limit, and when a
 * connection stops counting.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Logger } from "@ztm/shared/log";
import { withDeadline } from "../tests/fixtures/ca_helpers.ts";
import { eventually } from "../tests/fixtures/harness.ts";
import { ConnectionGate, type ConnectionGateOptions, readFdLimit } from "./connection_gate.ts";
import { LogThrottle } from "./log_throttle.ts";

/** A listener whose accepted sockets go through a gate, and clients that dial it from chosen addresses. */
async function gated(opts: Omit<ConnectionGateOptions, "quiet">) {
  const logs: Record<string, unknown>[] = [];
  const quiet = new LogThrottle(new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }));
  const reasons: string[] = [];
  const gate = new ConnectionGate({
    ...opts,
    quiet,
    onRefused: (reason) => reasons.push(reason),
  });
  const accepted = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    accepted.add(socket);
    socket.once("close", () => accepted.delete(socket));
  });
  // The gate sees each socket first, as the hub's `connection` listener does.
  server.prependListener("connection", (socket: net.Socket) => gate.open(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const clients = new Set<net.Socket>();
  /** Dials from `from`; resolves with the socket and whether the gate closed it at once. */
  const dial = async (from = "127.0.0.1") => {
    // Each connection is either counted or refused: the gate has seen it when their sum grows.
    const seen = gate.total + gate.refused + 1;
    const refusedBefore = gate.refused;
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
    socket.on("error", () => {});
    clients.add(socket);
    const closed = new Promise<true>((resolve) => socket.once("close", () => resolve(true)));
    await Promise.race([closed, new Promise((resolve) => socket.once("connect", resolve))]);
    await eventually(() => gate.total + gate.refused >= seen, 5_000, "the gate saw the connection");
    const refused = gate.refused > refusedBefore;
    // A refused connection is really closed, as the client sees it.
    if (refused) await withDeadline(closed, 5_000, "the refused socket closing");
    return { socket, refused, closed };
  };
  return {
    gate,
    reasons,
    logs,
    dial,
    async [Symbol.asyncDispose]() {
      for (const c of clients) c.destroy();
      for (const s of accepted) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

Deno.test("an address holds at most perAddress connections before admission; the next is closed and counted", async () => {
  await using g = await gated({ perAddress: 2, fdLimit: () => undefined });
  assert.equal((await g.dial()).refused, false);
  assert.equal((await g.dial()).refused, false);
  const third = await g.dial();
  assert.equal(third.refused, true);
  assert.equal(g.gate.refused, 1);
  assert.deepEqual(g.reasons, ["per_address"]);
  assert.equal(g.gate.total, 2);
  assert.ok(
    g.logs.some((l) => l.msg === "connection refused: too many" && l.code === "per_address"),
  );
  assert.equal((await g.dial("127.0.0.2")).refused, false, "another address has its own count");
  assert.equal(g.gate.total, 3);
});

Deno.test("an admitted connection leaves its address's count but stays in the total until its socket closes", async () => {
  await using g = await gated({ perAddress: 1, fdLimit: () => undefined });
  const a = await g.dial();
  assert.equal((await g.dial()).refused, true);
  g.gate.admitted("127.0.0.1", a.socket.localPort);
  g.gate.admitted("127.0.0.1", a.socket.localPort); // twice is harmless
  g.gate.admitted("127.0.0.9", 1); // unknown: nothing
  const b = await g.dial();
  assert.equal(b.refused, false);
  assert.equal(g.gate.total, 2);
  a.socket.destroy();
  await eventually(() => g.gate.total === 1, 5_000, "the admitted socket released");
  assert.equal((await g.dial()).refused, true, "b still holds the address's one place");
  b.socket.destroy();
  await eventually(() => g.gate.total === 0, 5_000, "b released");
  assert.equal((await g.dial()).refused, false, "a closed socket frees its address's place");
});

Deno.test("the total cap is the descriptor limit less a reserve of at least 128", async () => {
  {
    await using g = await gated({ perAddress: 10, fdLimit: () => 130 });
    assert.equal((await g.dial("127.0.0.1")).refused, false);
    assert.equal((await g.dial("127.0.0.2")).refused, false);
    assert.equal((await g.dial("127.0.0.3")).refused, true);
    assert.deepEqual(g.reasons, ["descriptors"]);
    assert.ok(g.logs.some((l) => l.code === "descriptors"));
  }
  {
    await using g = await gated({ perAddress: 10, fdLimit: () => 100 });
    assert.equal((await g.dial()).refused, false, "never below one connection");
    assert.equal((await g.dial()).refused, true);
  }
});

Deno.test("readFdLimit reads this process's soft descriptor limit", async () => {
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const soft = new TextDecoder().decode(out.stdout).trim();
  assert.equal(String(readFdLimit()), soft);
});
