/**
 * The hub killed (`kill -9`) while tunneled connections move data, then
 * restarted on its data dir and port: every broken connection ends cleanly
 * for its client (a close or an error, never a hang), the agents reconnect
 * by themselves, and new connections through every mapping work again. The
 * time until they do is printed, never asserted.
 */
import assert from "node:assert/strict";
import { eventually, Harness } from "../fixtures/harness.ts";
import { startPump } from "../fixtures/fault_helpers.ts";
import {
  addPortMapping,
  addService,
  endpointSeenBy,
  startMeshOf,
  waitConnected,
} from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("a hub killed mid-transfer breaks connections cleanly and agents come back by themselves", async () => {
  await using h = new Harness();
  await using targetA = await startEchoServer();
  await using targetB = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  // Two mappings, one each way.
  await addService(bob, "echo-b", targetB.port, ["alice"]);
  await addService(alice, "echo-a", targetA.port, ["bob"]);
  const toBob = await freePort();
  await addPortMapping(alice, toBob, "echo-b");
  const toAlice = await freePort();
  await addPortMapping(bob, toAlice, "echo-a");
  const mappings = [toBob, toAlice];
  for (const port of mappings) {
    await eventually(() => echoRoundTrip(port).then(() => true), 15_000, `mapping ${port} works`);
  }

  // Six connections moving data, three through each mapping.
  const pumps = await Promise.all(mappings.flatMap((port) => [port, port, port].map(startPump)));
  await eventually(() => pumps.every((p) => p.echoed > 256 * 1024), 15_000, "data flowing");

  const hubPort = m.hub.port;
  const killedAt = performance.now();
  assert.equal((await m.hub.kill()).signal, "SIGKILL");
  const endings = await Promise.race([
    Promise.all(
      pumps.map((p) => p.ended.then((how) => ({ how, ms: performance.now() - killedAt }))),
    ),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error("a broken connection hangs")), 60_000)
    ),
  ]);
  console.log(
    `broken connections ended: ${
      endings.map((e) => `${e.how} after ${Math.round(e.ms)} ms`).join(", ")
    }`,
  );

  const hub = await h.startHub(m.ca, { dir: m.hub.dir, args: [`--listen=127.0.0.1:${hubPort}`] });
  const restartedAt = performance.now();
  await Promise.all([waitConnected(alice, 60_000), waitConnected(bob, 60_000)]);
  const reconnected = performance.now();
  for (const port of mappings) {
    await eventually(() => echoRoundTrip(port).then(() => true), 60_000, `mapping ${port} again`);
  }
  const working = performance.now();
  // From then on every new connection works, through every mapping, many at once.
  await Promise.all(
    mappings.flatMap((port) => Array.from({ length: 20 }, () => echoRoundTrip(port))),
  );
  console.log(
    `hub restarted ${Math.round(restartedAt - killedAt)} ms after the kill; agents reconnected ` +
      `${Math.round(reconnected - restartedAt)} ms and every mapping worked ` +
      `${Math.round(working - restartedAt)} ms after the new hub listened`,
  );
  assert.equal((await endpointSeenBy(alice, bob.endpointId))?.online, true);
  assert.equal(hub.exited, false);
});
