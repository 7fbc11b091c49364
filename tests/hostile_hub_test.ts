/**
 * A hostile hub cannot take an agent down. The agent (a real process) is
 * joined to two meshes: a real one (CA, hub, and bob's agent offering an echo
 * service that the agent maps to a local port) and one whose hub is a
 * hand-built rogue (`rogue_hub.ts`) holding a valid hub certificate of its
 * own mesh CA. The rogue sends thousands of seeded mutations of every control
 * line a hub sends (`hub_mutations.ts`), then walks tunnels through its data
 * port and writes mutated lines on each parked data link. Meanwhile the
 * mapping to the real mesh is used over and over. The agent must stay up,
 * stay connected to both, answer the line that follows the fuzz, log the
 * refusals without a flood (once per kind, then at 10, 100, 1,000…), and
 * keep serving the real mesh throughout; a line past the length limit ends
 * that one session, and the agent dials the rogue again.
 */
import assert from "node:assert/strict";
import { MAX_CONTROL_LINE_BYTES } from "@ztm/shared/protocol";
import { api, eventually, Harness, issueUser } from "./harness.ts";
import { controlBases, linkBases, mutatedLine } from "./hub_mutations.ts";
import { addPortMapping, addService, meshStatus, startJoinedAgent } from "./mesh_fixture.ts";
import { readUntil, RogueHub, writeAll } from "./rogue_hub.ts";

const SEED = Number(Deno.env.get("ZTM_FUZZ_SEED") ?? 20261202);
const CONTROL_CASES = 4_000;
const LINK_CASES = 120;

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

/** A TCP server that closes each connection at once (a tunnel that ends cleanly at the target). */
function closingServer(): { port: number; close(): void } {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of l) c.close();
  })().catch(() => {});
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
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

const END_FRAME = new Uint8Array(4);

function endsWithEndFrame(b: Uint8Array): boolean {
  return b.byteLength >= 4 && b.subarray(-4).every((x) => x === 0);
}

Deno.test("an agent survives a hostile hub's mutated control and data-link lines and keeps serving its other mesh", async () => {
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

    // 2. Data links: each case is a tunnel that ends cleanly (the link is parked), then a
    // mutated line on the parked link.
    const links = linkBases("target");
    let parked = 0;
    for (let i = 0; i < LINK_CASES; i++) {
      const ticket = `ticket-${i}`;
      const served = new Promise<void>((resolve) => {
        rogue.onData = async ({ conn, ticket: got, rest }) => {
          try {
            if (got !== ticket) return;
            await writeAll(conn, END_FRAME);
            const ended = await readUntil(conn, rest, endsWithEndFrame);
            if (!ended) return;
            parked++;
            const line = mutatedLine(SEED + 1, i, links);
            await writeAll(conn, new Uint8Array([...line, 10]));
            // The agent closes the link, or (for a line that happens to be valid) answers on it.
            await Promise.race([
              readUntil(conn, new Uint8Array(0), (b) => b.byteLength > 0),
              new Promise((r) => setTimeout(r, 3_000)),
            ]);
          } catch {
            /* the agent closed it */
          } finally {
            try {
              conn.close();
            } catch { /* already closed */ }
            resolve();
          }
        };
      });
      assertAlive(`after data link case ${i - 1} (seed ${SEED + 1})`);
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
              reject(
                new Error(`data link case ${i}: the agent never dialled\n${alice.proc.tail(15)}`),
              ),
            15_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    }
    fuzzing = false;
    await realMesh;
    assert.equal(
      realMeshError,
      undefined,
      `the real mesh failed during the fuzz: ${realMeshError}`,
    );
    assert.ok(parked >= LINK_CASES / 2, `only ${parked} of ${LINK_CASES} links were parked`);

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
    const badLink = alice.proc.logs.filter((l) => l.msg === "bad data link message from hub");
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
      } refusals counted by kind); ${parked} parked links → ${badLink.length} log lines; ${roundTrips} round trips on the real mesh`,
    );
    assert.ok(bad.length > 0 && bad.length <= 60, `${bad.length} "bad message from hub" lines`);
    assert.ok(counted(bad) >= CONTROL_CASES / 10, `only ${counted(bad)} refusals counted`);
    assert.ok(badLink.length > 0 && badLink.length <= 30, `${badLink.length} data link lines`);
    assert.ok(refusedRemote.length <= 30, `${refusedRemote.length} "remote request refused" lines`);
    for (const l of [...bad, ...badLink]) {
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
