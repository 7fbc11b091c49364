/**
 * A hostile hub cannot take an agent down. The agent (a real process) is
 * joined to two meshes: a real one (CA, hub, and bob's agent offering an echo
 * service that the agent maps to a local port) and one whose hub is a
 * hand-built rogue (`rogue_hub.ts`) holding a valid hub certificate of its
 * own mesh CA. The rogue sends thousands of seeded mutations of every control
 * line a hub sends (`hub_mutations.ts`), then asks the agent to serve pairs
 * and writes seeded garbage on its data port where the caller's end-to-end
 * TLS should be (the agent must refuse it and close). Meanwhile the
 * mapping to the real mesh is used over and over. The agent must stay up,
 * stay connected to both, answer the line that follows the fuzz, log the
 * refusals without a flood (once per kind, then at 10, 100, 1,000…), and
 * keep serving the real mesh throughout; a line past the length limit ends
 * that one session, and the agent dials the rogue again.
 */
import assert from "node:assert/strict";
import { PAIR_HANDSHAKE_MS } from "@ztm/shared/peer_protocol";
import { MAX_CONTROL_LINE_BYTES } from "@ztm/shared/protocol";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { controlBases, mutatedLine, prng } from "../fixtures/hub_mutations.ts";
import {
  addPortMapping,
  addService,
  meshStatus,
  startJoinedAgent,
} from "../fixtures/mesh_fixture.ts";
import { readUntil, RogueHub, writeAll } from "../fixtures/rogue_hub.ts";

const SEED = Number(Deno.env.get("ZTM_FUZZ_SEED") ?? 20261202);
const CONTROL_CASES = 4_000;
const DATA_CASES = 120;

/** A TCP server that echoes each connection. */
function echoServer(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) {
      (async () => {
        try {
          await c.readable.pipeTo(c.writable);
        } catch { /* peer gone */ }
      })();
    }
  })().catch(() => {});
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

/** A TCP server that counts and closes each connection (no garbage pair may reach it). */
function closingServer(): { port: number; accepted: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = { port: (l.addr as Deno.NetAddr).port, accepted: 0, close: () => l.close() };
  (async () => {
    for await (const c of l) {
      server.accepted++;
      c.close();
    }
  })().catch(() => {});
  return server;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** One round trip through the agent's mapping to bob's echo service. */
async function echoThrough(port: number, text: string): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(conn, new TextEncoder().encode(text));
    const got = await readUntil(conn, new Uint8Array(0), (b) => b.byteLength >= text.length);
    assert.equal(new TextDecoder().decode(got ?? new Uint8Array(0)), text);
  } finally {
    conn.close();
  }
}

/**
 * Seeded bytes where a caller's TLS should start: a complete TLS record
 * (handshake or another content type) with a random body, or a few random
 * bytes; each ends the provider's TLS handshake with an alert.
 */
function garbage(next: () => number): Uint8Array {
  const size = 1 + Math.floor(next() * 2048);
  const body = new Uint8Array(size).map(() => Math.floor(next() * 256));
  if (next() < 0.3) return body;
  const type = next() < 0.8 ? 0x16 : 0x14 + Math.floor(next() * 4);
  return new Uint8Array([
    type,
    0x03,
    0x01 + Math.floor(next() * 3),
    size >> 8,
    size & 255,
    ...body,
  ]);
}

Deno.test("an agent survives a hostile hub's mutated control lines and data-port garbage and keeps serving its other mesh", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const bob = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "bob"));
  const alice = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "alice"));
  const echo = echoServer();
  const target = closingServer();
  await using rogue = await RogueHub.start();
  try {
    await addService(bob, "echo", echo.port, ["alice"]);
    const mapped = freePort();
    await addPortMapping(alice, mapped, "echo");
    await echoThrough(mapped, "before");

    // alice joins the rogue's mesh with a certificate of its CA, and offers a service there.
    const creds = await rogue.user("alice");
    const joined = await api(alice.url, "POST", "/api/meshes/rogue", {
      ca: rogue.ca.pem,
      agent: { name: "alice-rogue", ...creds },
      bootstraps: [rogue.address],
    });
    assert.equal(joined.status, 201, JSON.stringify(joined.body));
    const control = await rogue.nextControl();
    const made = await api(
      alice.url,
      "POST",
      `/api/meshes/rogue/endpoints/${control.endpointId}/services/tcp/target`,
      { host: "127.0.0.1", port: target.port, users: ["*"] },
    );
    assert.equal(made.status, 201, JSON.stringify(made.body));

    // The real mesh is used throughout the fuzz.
    let fuzzing = true;
    let roundTrips = 0;
    let realMeshError: unknown;
    const realMesh = (async () => {
      while ((fuzzing || roundTrips < 5) && !alice.proc.exited) {
        await echoThrough(mapped, `round ${roundTrips}`);
        roundTrips++;
      }
    })().catch((err) => (realMeshError = err));
    const assertAlive = (when: string) =>
      assert.equal(alice.proc.exited, false, `the agent died ${when}:\n${alice.proc.tail()}`);

    // 1. Control lines, written in batches of 50.
    const bases = controlBases("target");
    for (let i = 0; i < CONTROL_CASES; i += 50) {
      const batch: Uint8Array[] = [];
      for (let k = i; k < Math.min(i + 50, CONTROL_CASES); k++) {
        batch.push(mutatedLine(SEED, k, bases), new Uint8Array([10]));
      }
      assertAlive(`after control line ${i} (seed ${SEED})`);
      control.stream.write(new Uint8Array(batch.flatMap((b) => [...b])));
      // Let the agent read as we go (a real hub is flow-controlled the same way).
      await new Promise((r) => setTimeout(r, 0));
    }
    // The agent has read every line before it answers the one after them.
    control.write(JSON.stringify({
      type: "manage",
      rid: "after-the-fuzz",
      request: {},
      from: { endpoint: "e-1", user: "alice" },
    }));
    const answer = await control.waitFor((m) => m.type === "managed" && m.rid === "after-the-fuzz")
      .catch((err) => {
        assertAlive(`during the control lines (seed ${SEED})`);
        throw err;
      });
    assert.ok([400, 429].includes(Number(answer.status)), JSON.stringify(answer));
    assert.equal(alice.proc.exited, false, `the agent died:\n${alice.proc.tail()}`);

    // 2. Data port: each case is a pair the rogue asks the agent to serve; where the caller's
    // TLS should begin, the rogue writes seeded garbage. The agent must close the connection.
    const next = prng(SEED + 1);
    let closedByAgent = 0;
    const closings: Promise<void>[] = [];
    for (let i = 0; i < DATA_CASES; i++) {
      const ticket = (i + 1).toString(16).padStart(64, "0");
      const served = new Promise<void>((resolve) => {
        rogue.onData = async ({ conn, ticket: got }) => {
          if (got !== ticket) return conn.close();
          try {
            await writeAll(conn, garbage(next));
          } catch { /* already closed by the agent */ }
          resolve();
          // The agent's TLS server answers with an alert and closes, or (for garbage that looks
          // like the start of a record) closes at its handshake deadline: bounded wait past it.
          closings.push((async () => {
            let timer: ReturnType<typeof setTimeout> | undefined;
            const ended = await Promise.race([
              readUntil(conn, new Uint8Array(0), () => false).then(() => true, () => true),
              new Promise<boolean>((r) =>
                timer = setTimeout(() => r(false), PAIR_HANDSHAKE_MS + 10_000)
              ),
            ]);
            clearTimeout(timer);
            if (ended) closedByAgent++;
            try {
              conn.close();
            } catch { /* already closed */ }
          })());
        };
      });
      assertAlive(`after data case ${i - 1} (seed ${SEED + 1})`);
      control.write(JSON.stringify({
        type: "open",
        sid: `sid-${i}`,
        service: { proto: "tcp", name: "target" },
        // root may use every service; alice's refusals in the fuzz above used up her ration
        // (the provider answers a user past 20 refusals in 10 s with 429, dialling nothing).
        from: { endpoint: "e-1", user: "root" },
        ticket,
      }));
      // Bounded: an agent that never dials for this case fails the test instead of hanging it.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        served,
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Error(`data case ${i}: the agent never dialled\n${alice.proc.tail(15)}`)),
            15_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    }
    await Promise.all(closings);
    fuzzing = false;
    await realMesh;
    assert.equal(
      realMeshError,
      undefined,
      `the real mesh failed during the fuzz: ${realMeshError}`,
    );
    assert.equal(closedByAgent, DATA_CASES, "the agent left garbage pairs open");
    assert.equal(target.accepted, 0, "garbage on the data port reached the target");

    // 3. A line past the limit cannot be read past: the agent ends that session and dials again.
    control.stream.write(new Uint8Array(MAX_CONTROL_LINE_BYTES + 1024).fill(0x61));
    const again = await rogue.nextControl();
    assert.equal(again.endpointId, control.endpointId);
    await eventually(
      async () => (await meshStatus(alice, "rogue")).status.connected === true,
      15_000,
      "the rogue mesh link back up",
    );

    // Still up, still connected to both meshes, still serving the real one.
    assert.equal(alice.proc.exited, false, `the agent died:\n${alice.proc.tail()}`);
    assert.equal((await meshStatus(alice)).status.connected, true, "real mesh link");
    assert.equal((await meshStatus(alice, "rogue")).status.connected, true, "rogue mesh link");
    await echoThrough(mapped, "after");
    assert.ok(roundTrips >= 5, `${roundTrips} round trips`);

    // Refusals logged once per kind, then counted — no flood.
    const bad = alice.proc.logs.filter((l) => l.msg === "bad message from hub");
    const pairFailed = alice.proc.logs.filter((l) => l.msg === "pair failed");
    const refusedRemote = alice.proc.logs.filter((l) => l.msg === "remote request refused");
    const counted = (lines: typeof bad) => {
      const most = new Map<string, number>();
      for (const l of lines) {
        most.set(String(l.code), Math.max(most.get(String(l.code)) ?? 0, Number(l.count)));
      }
      return [...most.values()].reduce((a, b) => a + b, 0);
    };
    console.log(
      `seed ${SEED}: ${CONTROL_CASES} control lines → ${bad.length} log lines (${
        counted(bad)
      } refusals counted by kind); ${DATA_CASES} garbage pairs → ${closedByAgent} closed by the agent, ${pairFailed.length} "pair failed" lines; ${roundTrips} round trips on the real mesh`,
    );
    assert.ok(bad.length > 0 && bad.length <= 60, `${bad.length} "bad message from hub" lines`);
    assert.ok(counted(bad) >= CONTROL_CASES / 10, `only ${counted(bad)} refusals counted`);
    assert.ok(refusedRemote.length <= 30, `${refusedRemote.length} "remote request refused" lines`);
    for (const l of bad) {
      assert.equal(typeof l.count, "number", JSON.stringify(l));
      assert.equal(typeof l.code, "string", JSON.stringify(l));
    }
    assert.ok(
      !alice.proc.raw.some((l) => /uncaught|unhandled/i.test(l)),
      "an error escaped a handler",
    );
  } finally {
    echo.close();
    target.close();
  }
});
