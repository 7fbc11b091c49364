/**
 * A frozen provider agent (`SIGSTOP`): its sockets stay open but nothing
 * answers. The hub marks it offline within its liveness window (PING every
 * 10 s, 10 s to answer: `shared/protocol.ts`), connections to its service
 * are closed instead of hanging — while the hub still thinks it online and
 * after — and after `SIGCONT` it comes back by itself. The waits are
 * printed, never asserted; "never hangs" means "closed before a 60 s
 * deadline", three times the liveness window.
 */
import assert from "node:assert/strict";
import { eventually, Harness } from "../fixtures/harness.ts";
import { endpointSeenBy, mapEcho, startMeshOf, waitConnected } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";
import { awaitEnding, type Ending } from "../fixtures/fault_helpers.ts";

const show = (e: Ending) => `${e.how} after ${e.ms} ms`;

Deno.test("a frozen provider is marked offline, its service fails fast, and it recovers after SIGCONT", async () => {
  await using h = new Harness();
  await using target = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  const port = await mapEcho(alice, bob, target.port);

  const acceptedBefore = target.accepted;
  bob.proc.signal("SIGSTOP");
  const frozenAt = performance.now();
  try {
    // While the hub still counts bob online.
    const early = await awaitEnding(port);
    assert.notEqual(early.how, "hang", "a connection to the frozen provider hangs");
    const stillOnline = (await endpointSeenBy(alice, bob.endpointId))?.online;

    await eventually(
      async () => (await endpointSeenBy(alice, bob.endpointId))?.online === false,
      45_000,
      "the hub marks the frozen agent offline",
    );
    const offlineMs = Math.round(performance.now() - frozenAt);
    const late = await awaitEnding(port);
    assert.notEqual(late.how, "hang", "a connection to the offline provider hangs");
    console.log(
      `frozen provider: first connection ${show(early)} (hub said online: ${stillOnline}); ` +
        `marked offline ${offlineMs} ms after SIGSTOP; then a connection ${show(late)}`,
    );
    assert.equal(target.accepted, acceptedBefore, "the frozen agent reached its target");
  } finally {
    bob.proc.signal("SIGCONT");
  }
  const resumedAt = performance.now();
  await waitConnected(bob, 45_000);
  await eventually(
    async () => (await endpointSeenBy(alice, bob.endpointId))?.online === true,
    45_000,
    "bob online again",
  );
  await eventually(() => echoRoundTrip(port).then(() => true), 45_000, "mapping works again");
  console.log(
    `after SIGCONT the mapping worked again in ${Math.round(performance.now() - resumedAt)} ms`,
  );
  assert.equal(bob.proc.exited, false);
});
