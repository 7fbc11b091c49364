/**
 * Strangers flooding the hub's data port (issue "Hostile members, strangers
 * and rogue hubs", item 10): four loopback addresses keep hundreds of
 * connections open that never send a ticket, reconnecting as the hub closes
 * them, against a hub whose descriptor limit is lowered to 512. The hub
 * holds only a bounded share of its descriptors for them, releases every one
 * (at once past the caps, the rest at the ticket deadline), logs a count
 * instead of a line per connection, and a new member still joins and
 * tunnels through it. The same from 16 addresses, past the data port's
 * total cap: the hub frees a socket that never sent a ticket (the TLS data
 * port before end-to-end tunnels could not, so strangers on many addresses
 * filled it).
 */
import assert from "node:assert/strict";
import { eventually, Harness, hubDataPort, issueUser, run } from "../fixtures/harness.ts";
import { holdIdleConnections } from "../fixtures/fault_helpers.ts";
import { mapEcho, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";

const STRANGERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const PER_STRANGER = 300;
const FD_LIMIT = 512;

function openDescriptors(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

Deno.test("a stranger flood on the data port of a hub with few descriptors keeps no member out", () =>
  floodKeepsMembersIn(STRANGERS, PER_STRANGER));

Deno.test("strangers on many addresses cannot fill the data port", () =>
  floodKeepsMembersIn(Array.from({ length: 16 }, (_, i) => `127.0.1.${i + 2}`), 80));

async function floodKeepsMembersIn(strangers: string[], perStranger: number): Promise<void> {
  await using h = new Harness();
  await using target = await startEchoServer();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const pid = hub.child.pid;
  await run("prlimit", [`--pid=${pid}`, `--nofile=${FD_LIMIT}:${FD_LIMIT}`]);
  const dataPort = await hubDataPort(hub);
  const baseline = openDescriptors(pid);
  const logsBefore = hub.raw.length;

  const floods = strangers.map((a) => holdIdleConnections(dataPort, a, perStranger));
  try {
    // In all (the kernel's accept queue decides which address gets in when it is full).
    await eventually(
      () => floods.reduce((n, f) => n + f.opened, 0) > strangers.length * perStranger * 2,
      60_000,
      "the hub closing and the strangers reopening",
    );
    // The strangers hold a bounded share of the descriptors, whatever they try.
    const held = openDescriptors(pid) - baseline;
    assert.ok(held < FD_LIMIT / 2, `strangers hold ${held} of the hub's ${FD_LIMIT} descriptors`);

    // A new member joins, publishes and tunnels through the flood, on fresh pairs.
    const [aliceFiles, bobFiles] = await Promise.all(
      ["alice", "bob"].map((u) => issueUser(ca.url, u)),
    );
    const [alice, bob] = await Promise.all(
      [aliceFiles, bobFiles].map((f) => startJoinedAgent(h, hub.address, f)),
    );
    const port = await mapEcho(alice, bob, target.port, 30_000);
    await Promise.all(Array.from({ length: 8 }, () => echoRoundTrip(port)));
    assert.equal(hub.exited, false);
  } finally {
    for (const f of floods) f.stop();
  }
  // No line per connection: thousands of refusals left a handful of log lines.
  const refusedLines = hub.raw.slice(logsBefore).filter((l) => /data connection/.test(l)).length;
  const total = floods.reduce((n, f) => n + f.opened, 0);
  assert.ok(refusedLines < 50, `${refusedLines} log lines for ${total} stranger connections`);
  // Every stranger's descriptor is released.
  await eventually(
    () => openDescriptors(pid) <= baseline + 40,
    30_000,
    "the hub releasing the strangers' descriptors",
  );
}
