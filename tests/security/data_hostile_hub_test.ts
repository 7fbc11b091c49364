/**
 * A hostile hub on the data path (issue "End-to-end encrypted tunnels"). The
 * real hub runs with `--data-advertise` pointing agents at a proxy in this
 * test, which sees and controls every byte the hub splices: it records them
 * (a marker sent through a tunnel never appears), flips one byte of
 * ciphertext (the tunnel ends and the target sees only correct bytes), or
 * answers the caller's TLS itself with another member's certificate or the
 * hub's own (the caller refuses, and no target is reached).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { peerName, PREAMBLE_BYTES } from "@ztm/shared/peer_protocol";
import { connLeg, splice } from "@ztm/shared/splice";
import { concatBytes } from "@ztm/shared/concat_bytes";
import { eventually, Harness, issueUser } from "../fixtures/harness.ts";
import {
  addPortMapping,
  addService,
  startMeshOf,
  type TestMesh,
} from "../fixtures/mesh_fixture.ts";
import { freePort, randomBytes, startEchoServer } from "../fixtures/net_helpers.ts";
import { closeQuietly, readExactly, writeAll } from "../fixtures/data_fixture.ts";

type Mode =
  | { kind: "record" }
  | { kind: "flip"; at: number }
  | { kind: "impersonate"; cert: string; key: string };

/** A data-port proxy standing in for a hostile hub's splicer. */
class HostileDataPort {
  readonly port: number;
  target = 0;
  mode: Mode = { kind: "record" };
  /** Every byte relayed, both ways, per connection. */
  readonly seen: Uint8Array[][] = [];
  flipped = 0;
  #listener: Deno.TcpListener;
  #conns = new Set<Deno.Conn>();

  constructor() {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accept();
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      this.#conns.add(conn);
      this.#serve(conn).catch(() => {}).finally(() => {
        this.#conns.delete(conn);
        closeQuietly(conn);
      });
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const mode = this.mode;
    if (mode.kind === "impersonate") {
      await readExactly(conn, PREAMBLE_BYTES);
      // Terminate the caller's TLS with our own certificate (through a loopback TLS listener).
      const tls = Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: mode.cert,
        key: mode.key,
      });
      const local = await Deno.connect({
        hostname: "127.0.0.1",
        port: (tls.addr as Deno.NetAddr).port,
      });
      const inner = await tls.accept();
      tls.close();
      this.#conns.add(local);
      this.#conns.add(inner);
      const relay = splice(connLeg(conn), connLeg(local));
      inner.read(new Uint8Array(1024)).catch(() => {}).finally(() => closeQuietly(inner));
      await relay;
      return;
    }
    const hub = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    this.#conns.add(hub);
    const log: Uint8Array[] = [];
    this.seen.push(log);
    let down = 0;
    const pump = async (from: Deno.Conn, to: Deno.Conn, toAgent: boolean) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          log.push(chunk);
          const now = this.mode; // switched on live connections too
          if (toAgent && now.kind === "flip" && this.flipped === 0) {
            if (down <= now.at && now.at < down + n) {
              chunk[now.at - down] ^= 0x01;
              this.flipped++;
            }
          }
          if (toAgent) down += n;
          await writeAll(to, chunk);
        }
        await to.closeWrite().catch(() => {});
      } catch {
        closeQuietly(from);
        closeQuietly(to);
      }
    };
    await Promise.all([pump(conn, hub, false), pump(hub, conn, true)]);
    closeQuietly(hub);
  }

  /** All bytes relayed so far, as one buffer per connection. */
  relayed(): Uint8Array[] {
    return this.seen.map((parts) => concatBytes(parts));
  }

  close(): void {
    this.#listener.close();
    for (const c of this.#conns) closeQuietly(c);
  }
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.byteLength <= haystack.byteLength; i++) {
    for (let j = 0; j < needle.byteLength; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** A target that keeps every byte each connection sent it. */
function startSink() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Uint8Array[][] = [];
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const parts: Uint8Array[] = [];
      received.push(parts);
      (async () => {
        const buf = new Uint8Array(64 * 1024);
        try {
          while (true) {
            const n = await conn.read(buf);
            if (n === null) break;
            parts.push(buf.slice(0, n));
          }
        } catch { /* reset */ }
        closeQuietly(conn);
        conns.delete(conn);
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    received,
    close() {
      listener.close();
      for (const c of conns) closeQuietly(c);
    },
  };
}

/** A mesh whose agents dial the hostile data port; alice maps `port` to bob's service `svc`. */
async function hostileMesh(h: Harness, proxy: HostileDataPort, targetPort: number) {
  const m = await startMeshOf(h, ["alice", "bob"], {
    hubArgs: [`--data-advertise=${proxy.port}`],
  });
  const line = await m.hub.waitForLog((l) => l.msg === "data port listening");
  proxy.target = Number(String(line.addr).split(":").pop());
  await addService(m.agents.bob, "svc", targetPort, ["alice"]);
  const port = await freePort();
  await addPortMapping(m.agents.alice, port, "svc");
  return { m, port };
}

/** Sends `data` through `port` and reads what comes back until the tunnel closes. */
async function sendThrough(port: number, data: Uint8Array): Promise<string | undefined> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(conn, data);
    await conn.closeWrite();
    const buf = new Uint8Array(4096);
    while ((await conn.read(buf)) !== null) { /* drain */ }
    return undefined;
  } catch (err) {
    return String(err);
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("a hub that records every byte it splices never sees what a tunnel carries", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const proxy = new HostileDataPort();
  try {
    const { port } = await hostileMesh(h, proxy, echo.port);
    const marker = new TextEncoder().encode("ZTM-PLAINTEXT-MARKER-7f3a9c");
    const payload = new Uint8Array(256 * 1024);
    for (let at = 0; at + marker.byteLength <= payload.byteLength; at += 1000) {
      payload.set(marker, at);
    }
    await eventually(
      async () => (await sendThrough(port, payload)) === undefined && echo.received > 0,
      20_000,
      "a tunnel through the hostile data port",
    );
    // The bytes crossed the recorder (both legs), yet the marker never did.
    const relayed = proxy.relayed();
    const total = relayed.reduce((n, r) => n + r.byteLength, 0);
    assert.ok(total >= 2 * payload.byteLength, `only ${total} bytes crossed the recorder`);
    for (const r of relayed) assert.equal(contains(r, marker), false, "the hub saw plaintext");
    // Positive control: the marker is findable where it is plaintext.
    assert.ok(contains(payload, marker));
  } finally {
    proxy.close();
  }
});

Deno.test("a hub that flips one byte of ciphertext ends the tunnel, and the target sees no corrupted byte", async () => {
  await using h = new Harness();
  const sink = startSink();
  const proxy = new HostileDataPort();
  try {
    const { m, port } = await hostileMesh(h, proxy, sink.port);
    // Warm up: a pair exists and works (a small tunnel, under the flip offset).
    await eventually(
      async () =>
        (await sendThrough(port, new Uint8Array(16))) === undefined && sink.received.length > 0,
      20_000,
      "a tunnel through the data port",
    );
    proxy.mode = { kind: "flip", at: 300_000 };
    const data = randomBytes(4 * 1024 * 1024);
    const bobFrom = m.agents.bob.proc.logs.length;
    const before = sink.received.length;
    await sendThrough(port, data);
    await eventually(() => proxy.flipped > 0, 20_000, "the proxy flipping a byte");
    await m.agents.bob.proc.waitForLog(
      (l) => /pair (closed|failed)/.test(String(l.msg)),
      20_000,
      bobFrom,
    ).catch(() => {});
    // Whatever reached the target is an exact prefix of what was sent: nothing corrupted.
    for (const parts of sink.received.slice(before)) {
      const got = concatBytes(parts);
      assert.ok(got.byteLength < data.byteLength, "the whole payload arrived despite the flip");
      assert.ok(
        got.every((b, i) => b === data[i]),
        `the target received a corrupted byte (${got.byteLength} bytes)`,
      );
    }
  } finally {
    proxy.close();
    sink.close();
  }
});

for (const who of ["another member", "the hub itself"] as const) {
  Deno.test(`a hub that answers the caller's TLS with ${who}'s certificate is refused, and no target is reached`, async () => {
    await using h = new Harness();
    await using echo = await startEchoServer();
    const proxy = new HostileDataPort();
    try {
      const { m, port } = await hostileMesh(h, proxy, echo.port);
      let cert: string, key: string;
      if (who === "another member") {
        const carol = await issueUser(m.ca.url, "carol");
        cert = carol.certificate;
        key = carol.privateKey;
        assert.notEqual(peerName("carol"), peerName("bob"));
      } else {
        cert = await Deno.readTextFile(join(hubDir(m), "hub.crt"));
        key = await Deno.readTextFile(join(hubDir(m), "hub.key"));
      }
      proxy.mode = { kind: "impersonate", cert, key };
      const aliceFrom = m.agents.alice.proc.logs.length;
      assert.notEqual(await sendThrough(port, randomBytes(4096)).then((e) => e ?? "closed"), "");
      const failed = await m.agents.alice.proc.waitForLog(
        (l) => l.msg === "tunnel failed" && /Peer refused/.test(String(l.err)),
        20_000,
        aliceFrom,
      );
      assert.match(String(failed.err), /not valid for name|certificate/i);
      assert.equal(echo.accepted, 0, "an impersonated pair reached the target");
      assert.equal(echo.received, 0);
    } finally {
      proxy.close();
    }
  });
}

function hubDir(m: TestMesh): string {
  return (m.hub as unknown as { dir: string }).dir;
}
