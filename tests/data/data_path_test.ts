/**
 * The data path with real processes over loopback (issue "End-to-end
 * encrypted tunnels"): a caller gets a one-time ticket over its control
 * session, presents it on the hub's plain data port, and runs TLS end to end
 * to the provider inside the splice. A ticket works once, within its
 * lifetime, only while the session that minted it lives and its certificate
 * is not revoked; forged ones never reach the target. Real agents tunnel
 * through the same path, and a client that stops reading stalls instead of
 * filling memory.
 *
 * The caller side is a hand-built `HubClient` holding alice's certificate and
 * speaking the pair protocol with the agent's own modules; the provider is a
 * real agent of bob whose target is a counting echo server, so every refusal
 * is checked where it matters: no byte reaches the target.
 */
import assert from "node:assert/strict";
import { errText } from "@ztm/shared/log";
import { withDeadline } from "../fixtures/ca_helpers.ts";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import {
  askTicket,
  assertRefused,
  closeQuietly,
  concat,
  encoder,
  exchangeConn,
  finish,
  hello,
  hubStatus,
  mappedEcho,
  MIB,
  openE2e,
  randomTicket,
  readToEnd,
  startDataFixture,
  writeAll,
} from "../fixtures/data_fixture.ts";
import { Signer } from "../../agent/peer/identity.ts";
import { addPortMapping, addService, startMeshOf } from "../fixtures/mesh_fixture.ts";
import {
  echoRoundTrip,
  type EchoServer,
  equalBytes,
  freePort,
  IO_TIMEOUT_MS,
  randomBytes,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

Deno.test("a ticket opens an end-to-end pair that carries a tunnel's bytes both ways intact", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const granted = await askTicket(f);
  // The provider pre-checked and accepted without touching the target.
  assert.equal(echo.accepted, 0);
  const conn = await openE2e(f, granted);
  const big = randomBytes(MIB);
  const more = randomBytes(64 * 1024);
  try {
    assert.ok(equalBytes(await exchangeConn(conn, big), big), "1 MiB echoed intact");
    assert.ok(equalBytes(await exchangeConn(conn, more), more), "later bytes echoed intact");
    assert.equal((await hubStatus(f.alice)).tunnels, 1);
  } finally {
    await finish(conn);
  }
  assert.equal(echo.accepted, 1);
  assert.equal(echo.received, big.byteLength + more.byteLength);
  await eventually(
    async () => echo.open === 0 && (await hubStatus(f.alice)).tunnels === 0,
    10_000,
    "the tunnel closed at the target and the hub",
  );
});

Deno.test("a used ticket is refused on a second data connection; the first goes on", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const granted = await askTicket(f);
  const first = await openE2e(f, granted);
  try {
    const a = randomBytes(256 * 1024);
    assert.ok(equalBytes(await exchangeConn(first, a), a));
    const received = echo.received;
    const refusedBefore = (await hubStatus(f.alice)).dataRefused;

    await assertRefused(f, concat(hello(granted.ticket), randomBytes(4096)), "the reused ticket");
    assert.equal(echo.accepted, 1, "the reused ticket reached the target");
    assert.equal(echo.received, received, "bytes after a reused ticket reached the target");
    assert.equal((await hubStatus(f.alice)).dataRefused, refusedBefore + 1);

    const b = randomBytes(256 * 1024);
    assert.ok(equalBytes(await exchangeConn(first, b), b), "the first leg still works");
  } finally {
    await finish(first);
  }
  assert.equal(echo.accepted, 1);
});

Deno.test("a ticket presented after its lifetime is refused", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo, ["--open-timeout=1"]);
  // Positive control on the same hub: a ticket presented at once works.
  const prompt = await openE2e(f, await askTicket(f));
  const data = randomBytes(64 * 1024);
  assert.ok(equalBytes(await exchangeConn(prompt, data), data));
  await finish(prompt);

  const late = await askTicket(f);
  // Wait for the state the deadline leads to: bob's leg gave up waiting for its partner.
  const fromLog = f.bob.proc.logs.length;
  await f.bob.proc.waitForLog((l) => l.msg === "pair failed", 20_000, fromLog);
  const received = echo.received;
  await assertRefused(f, concat(hello(late.ticket), randomBytes(4096)), "the expired ticket");
  assert.equal(echo.accepted, 1);
  assert.equal(echo.received, received);
  assert.equal((await hubStatus(f.alice)).tunnels, 0);
});

Deno.test("forged tickets and garbage are refused, reach no target, and the hub goes on", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const granted = await askTicket(f);
  const ticket = granted.ticket;
  const at = 10;
  const altered = ticket.slice(0, at) + (ticket[at] === "a" ? "b" : "a") + ticket.slice(at + 1);
  const payload = randomBytes(4096);
  const attempts: [string, Uint8Array][] = [
    ["a random ticket", hello(randomTicket())],
    ["the ticket with one character changed", hello(altered)],
    ["the ticket in upper case", encoder.encode(`ZTM2 ${ticket.toUpperCase()}\n`)],
    ["the ticket without the ZTM2 prefix", encoder.encode(`${ticket}\n`)],
    ["version 1's prefix", encoder.encode(`ZTM1 ${ticket}\n`)],
    ["an HTTP request", encoder.encode("GET / HTTP/1.1\r\nHost: hub\r\n\r\n")],
    ["random bytes", randomBytes(1024)],
  ];
  for (const [what, first] of attempts) {
    await assertRefused(f, concat(first, payload), what);
    assert.equal(echo.accepted, 0, `${what} reached the target`);
    assert.equal(echo.received, 0, `bytes after ${what} reached the target`);
  }

  // The hub still answers, and none of that spent the genuine ticket.
  assert.equal(typeof (await hubStatus(f.alice)).version, "string");
  const conn = await openE2e(f, granted);
  const data = randomBytes(64 * 1024);
  assert.ok(equalBytes(await exchangeConn(conn, data), data), "the genuine ticket works");
  await finish(conn);
  assert.equal(echo.accepted, 1);
  assert.equal(echo.received, data.byteLength);
});

Deno.test("a ticket dies with the control session that asked for it", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const granted = await askTicket(f);
  const fromLog = f.mesh.hub.logs.length;
  await f.alice.close();
  await f.mesh.hub.waitForLog(
    (l) => l.msg === "session closed" && l.user === "alice",
    10_000,
    fromLog,
  );
  await assertRefused(f, concat(hello(granted.ticket), randomBytes(4096)), "the orphaned ticket");
  assert.equal(echo.accepted, 0);
  assert.equal(echo.received, 0);
});

Deno.test("revoking the caller's certificate refuses its tickets and cuts its live tunnels", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const live = await openE2e(f, await askTicket(f));
  const held = await askTicket(f);
  const accepted = echo.accepted;

  // The live tunnel moves data until something ends it.
  let rounds = 0;
  const chunk = randomBytes(16 * 1024);
  const pump = (async () => {
    try {
      while (true) {
        if (!equalBytes(await exchangeConn(live, chunk), chunk)) return "corrupted";
        rounds++;
      }
    } catch (err) {
      return errText(err);
    }
  })();
  try {
    await eventually(() => rounds >= 3, 10_000, "data moving on the live tunnel");
    const fromLog = f.mesh.hub.logs.length;
    const bobFrom = f.bob.proc.logs.length;
    const del = await fetch(`${f.mesh.ca.url}/api/certificates/alice`, { method: "DELETE" });
    assert.equal(del.status, 200, await del.text());
    await f.mesh.hub.waitForLog(
      (l) => l.msg === "session closed" && l.user === "alice",
      10_000,
      fromLog,
    );
    const why = await withDeadline(pump, 10_000, "the live tunnel closing after the revocation");
    assert.notEqual(why, "corrupted");
    // Bob's agent ends it too, on the CRL the hub pushed, by the certificate alice presented.
    await f.bob.proc.waitForLog(
      (l) => l.msg === "pair closed: peer certificate revoked" && l.user === "alice",
      10_000,
      bobFrom,
    ).catch(() => {
      // The hub's cut may close the pair first; then bob's agent has nothing left to close.
    });
  } finally {
    closeQuietly(live);
    await pump;
  }
  const received = echo.received;
  await assertRefused(
    f,
    concat(hello(held.ticket), randomBytes(4096)),
    "the revoked user's ticket",
  );
  assert.equal(echo.accepted, accepted);
  assert.equal(echo.received, received);
  assert.ok(f.alice.session.destroyed || f.alice.session.closed, "alice's session is gone");

  // Bob's side is unaffected: his agent still serves a new caller.
  const root = await issueUser(f.mesh.ca.url, "root");
  await using rootClient = HubClient.connect(f.mesh.hub.port, userTls(root));
  const control = await rootClient.openControl("root-hand", "root-hand");
  assert.equal(control.status, 200, control.text);
  control.stream.on("error", () => {});
  control.stream.on("data", () => {});
  const conn = await openE2e(
    f,
    await askTicket(f, rootClient),
    new Signer({
      caPem: f.caPem,
      certPem: root.certificate,
      keyPem: root.privateKey,
      user: "root",
      endpoint: "root-hand",
    }),
  );
  const data = randomBytes(16 * 1024);
  assert.ok(equalBytes(await exchangeConn(conn, data), data));
  await finish(conn);
});

Deno.test("a TLS handshake instead of a ticket is refused before any byte is relayed", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const granted = await askTicket(f);
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: f.dataPort });
  const tls = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [f.caPem] });
  await assert.rejects(
    withDeadline(tls.handshake(), IO_TIMEOUT_MS, "the refused handshake"),
  );
  closeQuietly(tls);
  assert.equal(echo.accepted, 0);
  // The ticket was never read from that connection: it still works.
  const conn = await openE2e(f, granted);
  const data = randomBytes(64 * 1024);
  assert.ok(equalBytes(await exchangeConn(conn, data), data));
  await finish(conn);
});

/** 20 sequential and then 20 concurrent connections through `port`, each echoed intact. */
async function manyConnections(port: number, echo: EchoServer): Promise<void> {
  const before = echo.accepted;
  for (let i = 0; i < 20; i++) await echoRoundTrip(port, 64 * 1024);
  await Promise.all(Array.from({ length: 20 }, () => echoRoundTrip(port, 64 * 1024)));
  assert.equal(echo.accepted, before + 40);
}

Deno.test("real agents tunnel sequential and concurrent connections on pooled pairs", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const port = await mappedEcho(m, echo);
  await using status = HubClient.connect(m.hub.port, userTls(m.agents.bob.files));
  const before = (await hubStatus(status)).dataConnections;
  for (let i = 0; i < 20; i++) await echoRoundTrip(port, 64 * 1024);
  // Sequential tunnels reuse warm pairs (a tunnel whose end frames are still in flight when
  // the next client connects makes the pool grow by one): far fewer data connections than
  // the two per tunnel a fresh pair costs.
  const grew = (await hubStatus(status)).dataConnections - before;
  assert.ok(grew <= 8, `20 sequential tunnels made ${grew} data connections`);
  await manyConnections(port, echo);
});

Deno.test("without a data port, tunnels fail with an error that names it", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"], { hubArgs: ["--data-listen=off"] });
  await using status = HubClient.connect(m.hub.port, userTls(m.agents.bob.files));
  assert.equal((await hubStatus(status)).dataPort, null);
  await addService(m.agents.bob, "echo", echo.port, ["alice"]);
  const port = await freePort();
  await addPortMapping(m.agents.alice, port, "echo");
  await m.agents.alice.proc.waitForLog((l) =>
    l.msg === "hub has no data port: tunnels are unavailable"
  );
  await assert.rejects(echoRoundTrip(port, 1024));
  await m.agents.alice.proc.waitForLog(
    (l) => l.msg === "tunnel failed" && /data port/.test(String(l.err)),
  );
  assert.equal(echo.accepted, 0);
});

/** VmRSS and VmHWM of `pid`, KiB. */
function memoryKiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1]);
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

Deno.test("a fast client through a new mapping grows no process by what it sends", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  // A sink target that reads as fast as it can; no round trip first, so the first
  // tunnel is the mapping's first (a fresh data connection), the next ones ride its pair.
  const sink = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let sunk = 0;
  const sinking = (async () => {
    for await (const c of sink) {
      (async () => {
        const buf = new Uint8Array(256 * 1024);
        try {
          for (let n; (n = await c.read(buf)) !== null;) sunk += n;
        } catch { /* the tunnel ended */ }
        closeQuietly(c);
      })();
    }
  })();
  try {
    await addService(m.agents.bob, "sink", (sink.addr as Deno.NetAddr).port, ["alice"]);
    const port = await freePort();
    await eventually(
      async () =>
        (await api(m.agents.alice.url, "GET", "/api/meshes/test/services?q=sink")).body
          .items?.length === 1,
      15_000,
      "the sink service listed",
    );
    await addPortMapping(m.agents.alice, port, "sink");
    const procs = { hub: m.hub, alice: m.agents.alice.proc, bob: m.agents.bob.proc };
    const before = Object.fromEntries(
      Object.entries(procs).map(([k, p]) => [k, memoryKiB(p.child.pid).rss]),
    );
    const chunk = randomBytes(MIB);
    const each = 128;
    for (let round = 0; round < 3; round++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      for (let i = 0; i < each; i++) await writeAll(conn, chunk);
      await conn.closeWrite();
      await withDeadline(readToEnd(conn), 30_000, "the mapping closing after the sink's end");
      closeQuietly(conn);
    }
    await eventually(() => sunk === 3 * each * MIB, 30_000, `all bytes at the sink (${sunk})`);
    // Without backpressure a process would hold what the client wrote faster than it drained.
    for (const [name, proc] of Object.entries(procs)) {
      const grew = memoryKiB(proc.child.pid).peak - before[name];
      assert.ok(grew < 64 * 1024, `${name} grew by ${grew} KiB while 3 × ${each} MiB went through`);
    }
  } finally {
    sink.close();
    await sinking.catch(() => {});
  }
});

Deno.test("a client that stops reading stalls its writes; hub and agents stay small", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const port = await mappedEcho(m, echo);
  const receivedBefore = echo.received;

  const total = 256 * MIB;
  const base = randomBytes(MIB);
  /** Block `i` of the stream: the base block stamped with its index, so order is checked too. */
  const block = (i: number) => {
    const b = base.slice();
    new DataView(b.buffer).setUint32(0, i);
    return b;
  };
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let written = 0;
  const writer = (async () => {
    for (let i = 0; i < total / MIB; i++) {
      const b = block(i);
      let at = 0;
      while (at < b.byteLength) {
        at += await conn.write(b.subarray(at));
        written = i * MIB + at;
      }
    }
    await conn.closeWrite();
  })();
  writer.catch(() => {}); // awaited below

  try {
    // Stalled: the written count stays put over five looks (about a second), short of the total.
    // Backpressure has no event to wait for, so this is the one span the test waits out.
    let last = -1;
    let still = 0;
    await eventually(
      async () => {
        if (written === total) throw new Error("all 256 MiB were written: something buffered it");
        still = written === last ? still + 1 : 0;
        last = written;
        await new Promise((r) => setTimeout(r, 250));
        return still >= 4;
      },
      15_000,
      "the client's writes stalling",
    );
    assert.ok(written < total);
    const limitKiB = (300 * 1000 * 1000) / 1024;
    const procs = { hub: m.hub, alice: m.agents.alice.proc, bob: m.agents.bob.proc };
    for (const [name, proc] of Object.entries(procs)) {
      const mem = memoryKiB(proc.child.pid);
      assert.ok(
        mem.rss < limitKiB && mem.peak < limitKiB,
        `${name} holds ${mem.rss} KiB (peak ${mem.peak} KiB) with ${written} bytes written`,
      );
    }

    // Now read: everything arrives, in order, intact.
    const buf = new Uint8Array(256 * 1024);
    let got = 0;
    let expected = block(0);
    await withDeadline(
      (async () => {
        while (got < total) {
          const n = await conn.read(buf);
          if (n === null) throw new Error(`the echo ended after ${got} of ${total} bytes`);
          let k = 0;
          while (k < n) {
            const off = (got + k) % MIB;
            if (off === 0) expected = block((got + k) / MIB);
            const len = Math.min(n - k, MIB - off);
            for (let j = 0; j < len; j++) {
              if (buf[k + j] !== expected[off + j]) throw new Error(`byte ${got + k + j} differs`);
            }
            k += len;
          }
          got += n;
        }
      })(),
      30_000,
      "reading all 256 MiB back",
    );
    await writer;
    assert.deepEqual(await readToEnd(conn), { bytes: 0 });
  } finally {
    closeQuietly(conn);
    await writer.catch(() => {});
  }
  assert.equal(echo.received - receivedBefore, total);
});

Deno.test("a half-close does not cut the data still flowing the other way", async () => {
  await using h = new Harness();
  // A server that answers only after the request has ended: 32 MiB, written after the client's FIN.
  const answer = randomBytes(32 * 1024 * 1024);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          const request = await readAllOf(conn);
          if (request.byteLength === 5) await writeAll(conn, answer);
          await conn.closeWrite();
        } catch {
          /* the client went away */
        } finally {
          closeQuietly(conn);
        }
      })();
    }
  })();
  try {
    const m = await startMeshOf(h, ["alice", "bob"]);
    await addService(m.agents.bob, "late", (listener.addr as Deno.NetAddr).port, ["alice"]);
    const port = await freePort();
    await addPortMapping(m.agents.alice, port, "late");
    for (let i = 0; i < 3; i++) {
      const conn = await eventually(() => Deno.connect({ hostname: "127.0.0.1", port }), 10_000);
      await writeAll(conn, new TextEncoder().encode("hello"));
      await conn.closeWrite();
      const back = await withDeadline(
        readAllOf(conn),
        IO_TIMEOUT_MS * 3,
        "the answer after the FIN",
      );
      closeQuietly(conn);
      assert.equal(
        back.byteLength,
        answer.byteLength,
        `round ${i}: every byte after the half-close`,
      );
      assert.ok(equalBytes(back, answer), `round ${i}: intact`);
    }
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});

/** Reads until the peer's end; returns everything. */
async function readAllOf(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(256 * 1024);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) return concat(...chunks);
    chunks.push(buf.slice(0, n));
  }
}
