/**
 * Attacks on the pair protocol by someone who did not write it, on real
 * loopback sockets and real TLS: a compromised hub (it splices anyone to
 * anyone and picks every sid), a malicious member with a valid certificate,
 * and a local process on the provider. Each test performs the attack and
 * checks that the provider reaches no target for it.
 */
import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import {
  encodePreamble,
  type PeerAnswer,
  type PeerHello,
  peerName,
  PREAMBLE_BYTES,
} from "@ztm/shared/peer_protocol";
import { connLeg, type Leg, splice } from "@ztm/shared/splice";
import { exportPrivateKeyPem, parseCertificate } from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";
import { newCa, newLeaf, type TestCa } from "../../tests/fixtures/test_pki.ts";
import { PairDialer } from "./dialer.ts";
import { Signer } from "./identity.ts";
import { echoProvider, signerOf, startSplicer } from "./_fixture.ts";
import type { PairListenerOptions } from "./listener.ts";
import { PairLink, writeAll } from "./pair_link.ts";

const quiet = new Logger("agent", { sink: () => {} });
const IO_MS = 5_000;

/** Rejects after `ms` (every wait here is bounded). */
function within<T>(p: Promise<T>, what: string, ms = IO_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function newTicket(): string {
  return [...crypto.getRandomValues(new Uint8Array(32))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bob provides `echo` to alice only; the hub is the attacker's. */
async function world(listenerOpts: Partial<PairListenerOptions> = {}) {
  const ca = await newCa();
  const alice = await signerOf(ca, "alice", { endpoint: "ep-alice" });
  const bob = await signerOf(ca, "bob", { endpoint: "ep-bob" });
  const mallory = await signerOf(ca, "mallory", { endpoint: "ep-mallory" });
  const hub = startSplicer();
  const { echo, provider, pairs: bobPairs } = echoProvider(bob, listenerOpts);
  const closers: (() => void)[] = [];
  return {
    ca,
    alice,
    bob,
    mallory,
    echo,
    hub,
    bobPairs,
    provider,
    /** Attaches bob to pair `sid` (the hub's `open`); returns the caller's ticket. */
    attachBob(sid: string): string {
      const ticket = newTicket();
      bobPairs.attach(hub.data, ticket, sid);
      return ticket;
    },
    defer(f: () => void) {
      closers.push(f);
    },
    close() {
      for (const f of closers) f();
      bobPairs.close();
      provider.close();
      hub.close();
      echo.close();
    },
  };
}

/** Alice's pair dialer (`revoked`: the serials she holds revoked), through the attacker's hub; closed with `w`. */
function aliceDialer(
  w: Awaited<ReturnType<typeof world>>,
  revoked: () => Set<string> = () => new Set(),
): PairDialer {
  const dialer = new PairDialer({ signer: w.alice, log: quiet, mesh: "m", revoked });
  w.defer(() => dialer.close());
  dialer.setDataAddress(w.hub.data);
  return dialer;
}

/** A hand-made caller: TLS to `serverUser`'s peer name through the hub with `ticket`. */
async function rawCaller(w: Awaited<ReturnType<typeof world>>, ticket: string, serverUser = "bob") {
  const tcp = await Deno.connect(w.hub.data);
  await writeAll(tcp, encodePreamble(ticket));
  const tls = await Deno.startTls(tcp, { hostname: peerName(serverUser), caCerts: [w.ca.pem] });
  const link = new PairLink(tls);
  w.defer(() => link.close());
  return link;
}

/** Reads answers until an error line, the close, or `opened`. */
async function outcome(link: PairLink): Promise<string> {
  try {
    while (true) {
      const m = await within(link.readMessage<PeerAnswer>(), "answer");
      if (m === null) return "closed";
      if (m.type === "error") return `error ${m.code}: ${m.message}`;
      if (m.type === "opened") return "opened";
    }
  } catch (err) {
    return `broken: ${(err as Error).message}`;
  }
}

/**
 * A TLS server with `certPem`/`keyPem`, joined through the hub's data port with `ticket` to
 * whoever holds the ticket's other side (a hub that splices anyone to anyone makes this
 * possible); returns the TLS connection it accepts.
 */
async function interpose(
  w: Awaited<ReturnType<typeof world>>,
  ticket: string,
  certPem: string,
  keyPem: string,
): Promise<Deno.TlsConn> {
  const tlsListener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certPem,
    key: keyPem,
  });
  w.defer(() => tlsListener.close());
  const hubConn = await Deno.connect(w.hub.data);
  await writeAll(hubConn, encodePreamble(ticket));
  const local = await Deno.connect({
    hostname: "127.0.0.1",
    port: (tlsListener.addr as Deno.NetAddr).port,
  });
  splice(connLeg(hubConn), connLeg(local)).catch(() => {});
  return await tlsListener.accept();
}

/**
 * Mallory's provider side, as a compromised hub splices alice to it: a TLS
 * server with mallory's own certificate that keeps alice's first line.
 */
async function captureHello(
  w: Awaited<ReturnType<typeof world>>,
  ticket: string,
): Promise<PeerHello> {
  const link = new PairLink(
    await interpose(w, ticket, w.mallory.own.certPem, w.mallory.own.keyPem),
  );
  try {
    return await within(link.readMessage<PeerHello>(), "alice's hello") as PeerHello;
  } finally {
    link.close(); // alice hears nothing more from "mallory"
  }
}

Deno.test("a hub and a member cannot turn a hello given to the member into one for another provider by shifting fields", async () => {
  const w = await world();
  try {
    // Alice calls mallory's service; the compromised hub names the pair `<bob's peer name>|x`.
    const x = crypto.randomUUID();
    const aliceTicket = newTicket();
    const dialer = aliceDialer(w);
    const calling = dialer.open(
      { endpoint: "ep-mallory", user: "mallory" },
      { proto: "tcp", name: "chat" },
      () => Promise.resolve({ sid: `${w.bob.name}|${x}`, ticket: aliceTicket }),
    ).catch((err) => err);
    const stolen = await captureHello(w, aliceTicket);
    // Mallory replays it to bob on pair `x`, moving mallory's name into the endpoint field.
    const link = await rawCaller(w, w.attachBob(x));
    await link.writeMessages(
      { ...stolen, endpoint: `${stolen.endpoint}|${w.mallory.name}` },
      { type: "open", proto: "tcp", name: "echo" },
    );
    const got = await outcome(link);
    assert.match(got, /^error peer_refused/, got);
    assert.equal(w.echo.accepted, 0, "mallory reached alice's service as alice");
    link.close();
    await within(calling, "alice's call");
  } finally {
    w.close();
  }
});

/** Another endpoint of bob's (the same user certificate) with its own `echo`. */
function secondBobEndpoint(w: Awaited<ReturnType<typeof world>>) {
  const bob2 = new Signer({ ...w.bob.own, endpoint: "ep-bob2" });
  const { echo: echo2, provider: provider2, pairs: pairs2 } = echoProvider(bob2);
  w.defer(() => {
    pairs2.close();
    provider2.close();
    echo2.close();
  });
  return { echo2, pairs2 };
}

Deno.test("a hub that splices the caller to another endpoint of the same user is refused, and no target is reached", async () => {
  const w = await world();
  try {
    const { echo2, pairs2 } = secondBobEndpoint(w);
    const dialer = aliceDialer(w);
    const sid = crypto.randomUUID();
    const ticket = newTicket();
    // Alice asks for bob's endpoint ep-bob; the hub hands the pair to ep-bob2.
    const err = await within(
      dialer.open(
        { endpoint: "ep-bob", user: "bob" },
        { proto: "tcp", name: "echo" },
        () => {
          pairs2.attach(w.hub.data, ticket, sid);
          return Promise.resolve({ sid, ticket });
        },
      ).then((t) => {
        t.leg.abort();
        t.release(false);
        return undefined;
      }, (e) => e),
      "alice's call",
    );
    assert.match(String(err), /peer_refused|Peer refused/, String(err));
    assert.equal(echo2.accepted, 0, "the wrong endpoint's target was reached");
  } finally {
    w.close();
  }
});

Deno.test("a hello given to one endpoint of a user is refused at another endpoint of that user", async () => {
  const w = await world();
  try {
    const { echo2, pairs2 } = secondBobEndpoint(w);
    const sid = crypto.randomUUID();
    // What alice sent ep-bob on pair `sid` (ep-bob's holder, or the hub with its key, keeps it) …
    const toBob1 = await w.alice.hello(w.alice.name, "ep-alice", w.bob.name, "ep-bob", sid);
    // … replayed at ep-bob2 on a pair the hub names the same.
    const ticket = newTicket();
    pairs2.attach(w.hub.data, ticket, sid);
    const link = await rawCaller(w, ticket);
    await link.writeMessages(toBob1, { type: "open", proto: "tcp", name: "echo" });
    const got = await outcome(link);
    assert.match(got, /^error peer_refused/, got);
    assert.equal(echo2.accepted, 0);
  } finally {
    w.close();
  }
});

/** A member's pair to bob, its hello checked: answers what `open` gets (alice may use `echo`). */
async function helloPair(w: Awaited<ReturnType<typeof world>>, who: Signer, open = "nope") {
  const sid = crypto.randomUUID();
  const link = await rawCaller(w, w.attachBob(sid));
  await link.writeMessages(
    await who.hello(who.name, who.own.endpoint, w.bob.name, w.bob.own.endpoint, sid),
    { type: "open", proto: "tcp", name: open },
  );
  return { link, answer: await outcome(link) };
}

async function until(what: string, ok: () => boolean, ms = IO_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("a caller that keeps its pairs idle forever has them closed by the provider", async () => {
  const w = await world({ idleMs: 300 });
  try {
    const { link, answer } = await helloPair(w, w.alice);
    assert.match(answer, /^error unknown_service/, answer);
    assert.equal(w.bobPairs.pairs, 1);
    // Alice says nothing more: the provider ends the pair by itself.
    const next = await within(link.readMessage().catch(() => null), "the provider's close");
    assert.equal(next, null);
    await until("the pair released", () => w.bobPairs.pairs === 0);
  } finally {
    w.close();
  }
});

Deno.test("a member opening many pairs to one provider is held to its share; other users still get in", async () => {
  const w = await world({ maxPairsPerCaller: 3 });
  try {
    const held = [];
    for (let i = 0; i < 3; i++) {
      const p = await helloPair(w, w.mallory);
      assert.match(p.answer, /^error unknown_service/, p.answer);
      held.push(p.link);
    }
    const over = await helloPair(w, w.mallory);
    assert.match(over.answer, /^error too_many_pairs/, over.answer);
    assert.equal(w.bobPairs.pairs, 3);
    const alice = await helloPair(w, w.alice, "echo");
    assert.equal(alice.answer, "opened");
  } finally {
    w.close();
  }
});

Deno.test("a hub that sends the provider a flood of pair requests gets no more than the provider's limit of dials", async () => {
  const w = await world({ maxPairs: 4 });
  try {
    // Twenty pairs nobody will call: each costs the provider a data-port dial and a loopback hop.
    for (let i = 0; i < 20; i++) w.attachBob(crypto.randomUUID());
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(w.bobPairs.pairs <= 4, `${w.bobPairs.pairs} pairs held`);
    assert.ok(w.bobPairs.attaching <= 4, `${w.bobPairs.attaching} pairs attaching`);
  } finally {
    w.close();
  }
});

/** Sends `bytes` as a caller's first words on a fresh pair to bob; what bob answers. */
async function firstWords(w: Awaited<ReturnType<typeof world>>, bytes: Uint8Array | string) {
  const link = await rawCaller(w, w.attachBob(crypto.randomUUID()));
  try {
    await writeAll(link.conn, typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
  } catch { /* bob may close before all of it went */ }
  const got = await outcome(link);
  link.close();
  return got;
}

/** A hello from `signer` on a fresh pair, then `open echo`; what bob answers. */
async function helloFrom(w: Awaited<ReturnType<typeof world>>, signer: Signer) {
  const { link, answer } = await helloPair(w, signer, "echo");
  link.close();
  return answer;
}

Deno.test("a member's garbage, out-of-turn messages and bombs get no target, and the provider goes on", async () => {
  const w = await world();
  try {
    const open = JSON.stringify({ type: "open", proto: "tcp", name: "echo" }) + "\n";
    const cases: [string, string | Uint8Array, RegExp][] = [
      ["an open before any hello", open, /^error peer_refused: .*no hello/],
      ["a 200 KiB line", "x".repeat(200 * 1024), /^(closed|broken|error peer_line_too_large)/],
      ["nested arrays", "[".repeat(8000) + "]".repeat(8000) + "\n", /^error bad_message/],
      [
        "a hello nested deep",
        `{"type":"hello","version":2,"cert":${"[".repeat(7000)}${"]".repeat(7000)}}\n`,
        /^error peer_refused: .*malformed hello/,
      ],
      [
        "binary",
        new Uint8Array([
          ...crypto.getRandomValues(new Uint8Array(4000)).map((b) => b === 10 ? 0 : b),
          10,
        ]),
        /^error bad_message/,
      ],
      [
        "a frame header",
        new Uint8Array([0, 0, 0, 16, ...new TextEncoder().encode(open)]),
        /^error bad_message/,
      ],
      [
        "a hello with a garbage certificate",
        JSON.stringify({
          type: "hello",
          version: 2,
          endpoint: "e",
          cert: "x".repeat(9000),
          sig: "AA",
        }) + "\n",
        /^error peer_refused: .*does not parse/,
      ],
      [
        "a hello of protocol 1",
        JSON.stringify({ type: "hello", version: 1, endpoint: "e", cert: "", sig: "" }) + "\n",
        /^error protocol_mismatch: .*protocol 2; the peer said 1/,
      ],
    ];
    for (const [what, bytes, want] of cases) {
      const got = await firstWords(w, bytes);
      assert.match(got, want, `${what}: ${got}`);
    }
    // A good hello, then a second hello: the pair closes.
    const sid = crypto.randomUUID();
    const link = await rawCaller(w, w.attachBob(sid));
    const hello = await w.alice.hello(w.alice.name, "ep-alice", w.bob.name, "ep-bob", sid);
    await link.writeMessages(hello, { type: "open", proto: "tcp", name: "nope" });
    assert.match(await outcome(link), /^error unknown_service/);
    await link.writeMessages(hello);
    assert.equal(await outcome(link), "closed");
    assert.equal(w.echo.accepted, 0, "a target was reached");
    await until("bob's pairs all closed", () => w.bobPairs.pairs === 0);
    assert.equal(await helloFrom(w, w.alice), "opened", "bob stopped serving");
  } finally {
    w.close();
  }
});

Deno.test("hellos from a hub, CA, foreign, expired, revoked or misnamed certificate are refused; a client-only user certificate may call", async () => {
  const revoked = new Set<string>();
  const w = await world({ revoked: () => revoked });
  try {
    const as = (
      leaf: { certificate: string; privateKey: string },
      user: string,
      ca: TestCa = w.ca,
    ) =>
      new Signer({
        caPem: ca.pem,
        certPem: leaf.certificate,
        keyPem: leaf.privateKey,
        user,
        endpoint: "ep-x",
      });
    const hub = await as(
      await newLeaf(w.ca, { name: "alice", role: "server", altNames: ["localhost"] }),
      "alice",
    );
    const caItself = await as(
      { certificate: w.ca.pem, privateKey: await exportPrivateKeyPem(w.ca.privateKey) },
      "ztm mesh CA",
    );
    const rogueCa = await newCa();
    const foreign = await as(
      await newLeaf(rogueCa, { name: "alice", role: "peer", altNames: [peerName("alice")] }),
      "alice",
      rogueCa,
    );
    const expired = await as(
      await newLeaf(w.ca, {
        name: "alice",
        role: "peer",
        now: new Date(Date.now() - 10 * 86_400_000),
        days: 1,
      }),
      "alice",
    );
    const old = await as(await newLeaf(w.ca, { name: "alice", role: "peer" }), "alice");
    revoked.add(normalizeSerial(parseCertificate(old.own.certPem).serialNumber));
    // Mallory's own certificate with alice's peer name, claiming to be alice.
    const misnamed = await as(
      await newLeaf(w.ca, { name: "mallory", role: "peer", altNames: [peerName("alice")] }),
      "alice",
    );
    const cases: [string, Signer, RegExp][] = [
      ["a hub certificate named alice", hub, /not a user certificate/],
      ["the CA's own certificate", caItself, /not a user certificate/],
      ["another CA's alice", foreign, /not issued by the mesh CA/],
      ["an expired alice", expired, /expired/],
      ["a revoked alice", old, /revoked/],
      ["mallory's certificate with alice's peer name", misnamed, /signature does not verify/],
    ];
    for (const [what, signer, want] of cases) {
      const got = await helloFrom(w, signer);
      assert.match(got, /^error peer_refused/, `${what}: ${got}`);
      assert.match(got, want, `${what}: ${got}`);
    }
    assert.equal(w.echo.accepted, 0, "a target was reached");
    const clientOnly = await as(await newLeaf(w.ca, { name: "alice", role: "client" }), "alice");
    assert.equal(await helloFrom(w, clientOnly), "opened");
    assert.equal(w.echo.accepted, 1);
  } finally {
    w.close();
  }
});

/** A tunnel from alice's dialer to bob's `echo` and back, through `data`. */
async function echoOnce(
  w: Awaited<ReturnType<typeof world>>,
  data: { hostname: string; port: number },
) {
  const dialer = new PairDialer({
    signer: w.alice,
    log: quiet,
    mesh: "m",
    revoked: () => new Set(),
  });
  dialer.setDataAddress(data);
  try {
    const sid = crypto.randomUUID();
    const t = await within(
      dialer.open({ endpoint: "ep-bob", user: "bob" }, { proto: "tcp", name: "echo" }, () => {
        const ticket = w.attachBob(sid);
        return Promise.resolve({ sid, ticket });
      }),
      "alice's tunnel",
    );
    const sent = new TextEncoder().encode("marker-" + crypto.randomUUID());
    await t.leg.write(sent);
    await t.leg.closeWrite();
    let got = "";
    while (true) {
      const chunk = await within(t.leg.read(), "echo");
      if (chunk === null) break;
      got += new TextDecoder().decode(chunk);
    }
    t.release(true);
    assert.equal(got, new TextDecoder().decode(sent));
    return sid;
  } finally {
    dialer.close();
  }
}

Deno.test("a hub that replays a recorded pair's bytes to the provider gets no TLS and no target", async () => {
  const w = await world();
  try {
    // A recorder in front of the hub keeps what alice's side sent.
    const recorder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const recorded: Uint8Array[] = [];
    const conns = new Set<Deno.Conn>();
    w.defer(() => {
      recorder.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    });
    (async () => {
      for await (const conn of recorder) {
        const hub = await Deno.connect(w.hub.data);
        conns.add(conn).add(hub);
        const tap: Leg = connLeg(conn);
        const read = tap.read.bind(tap);
        tap.read = async () => {
          const chunk = await read();
          if (chunk) recorded.push(chunk.slice());
          return chunk;
        };
        splice(tap, connLeg(hub)).catch(() => {});
      }
    })().catch(() => {});
    const sid = await echoOnce(w, {
      hostname: "127.0.0.1",
      port: (recorder.addr as Deno.NetAddr).port,
    });
    assert.equal(w.echo.accepted, 1);
    const all = new Uint8Array(recorded.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const c of recorded) {
      all.set(c, at);
      at += c.byteLength;
    }
    // The same pair id, a fresh ticket for bob, and alice's recorded bytes after the preamble.
    const tcp = await Deno.connect(w.hub.data);
    conns.add(tcp);
    await writeAll(tcp, encodePreamble(w.attachBob(sid)));
    await writeAll(tcp, all.subarray(PREAMBLE_BYTES)).catch(() => {});
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await within(tcp.read(buf).catch(() => null), "bob's close");
      if (n === null) break;
    }
    assert.equal(w.echo.accepted, 1, "the replay reached the target");
  } finally {
    w.close();
  }
});

Deno.test("a local process that connects to the provider's loopback TLS listener is never served, and pairs go on", async () => {
  const w = await world();
  try {
    // Its port, as a local process finds it (a scan of the listening ports would do the same).
    const port = w.bobPairs.loopbackPort;
    // Forty local connections race alice's tunnels, each trying the TLS and a member's hello.
    const sid = crypto.randomUUID();
    const hello = await w.mallory.hello(w.mallory.name, "ep-mallory", w.bob.name, "ep-bob", sid);
    const attack = async () => {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      const tls = await Deno.startTls(tcp, { hostname: w.bob.name, caCerts: [w.ca.pem] });
      const link = new PairLink(tls);
      try {
        await link.writeMessages(hello, { type: "open", proto: "tcp", name: "echo" });
        return await within(link.readMessage().then((m) => m ? "answered" : "closed"), "attack");
      } catch (err) {
        return `refused: ${(err as Error).message.slice(0, 60)}`;
      } finally {
        link.close();
      }
    };
    const attacks = Promise.all(Array.from({ length: 40 }, attack));
    for (let i = 0; i < 3; i++) await echoOnce(w, w.hub.data);
    for (const got of await attacks) assert.match(got, /^(closed|refused)/, got);
    assert.equal(w.echo.accepted, 3);
  } finally {
    w.close();
  }
});

// Known gap (not fixed here): native TLS in Deno 2.9.3 neither checks a CRL nor shows the
// peer's certificate, so nothing binds the provider's hello to the certificate its TLS
// presented, and hellos are not bound to the TLS session. A hub that splices alice to the
// holder of bob's revoked (unexpired) key can relay both hellos to and from the real bob and
// read the tunnel. Closing it needs peer names the caller can check against its CRL before
// TLS (a per-certificate label in the name, issued by the CA), or a Deno API for the peer
// certificate or exported keying material. Enable this test with that fix.
Deno.test({
  name: "a hub and the holder of bob's revoked key cannot sit between alice and bob",
  ignore: true,
  fn: async () => {
    const revoked = new Set<string>();
    const w = await world({ revoked: () => revoked });
    try {
      const oldBob = await newLeaf(w.ca, {
        name: "bob",
        role: "peer",
        altNames: [peerName("bob")],
      });
      revoked.add(normalizeSerial(parseCertificate(oldBob.certificate).serialNumber));
      const sid = crypto.randomUUID();
      const aliceTicket = newTicket();
      const dialer = aliceDialer(w, () => revoked);
      const calling = dialer.open(
        { endpoint: "ep-bob", user: "bob" },
        { proto: "tcp", name: "echo" },
        () => Promise.resolve({ sid, ticket: aliceTicket }),
      );
      calling.catch(() => {});
      // The man in the middle: TLS to alice with the revoked certificate …
      const toAlice = new PairLink(
        await interpose(w, aliceTicket, oldBob.certificate, oldBob.privateKey),
      );
      w.defer(() => toAlice.close());
      const hello = await within(toAlice.readMessage<PeerHello>(), "alice's hello");
      const open = await within(toAlice.readMessage<PeerAnswer>(), "alice's open");
      // … and a caller to the real bob on the same pair id, with alice's words.
      const toBob = await rawCaller(w, w.attachBob(sid));
      await toBob.writeMessages(hello as PeerHello, open as unknown as PeerAnswer);
      const bobHello = await within(toBob.readMessage<PeerAnswer>(), "bob's hello");
      const opened = await within(toBob.readMessage<PeerAnswer>(), "bob's opened");
      await toAlice.writeMessages(bobHello!, opened!);
      const tapped: Uint8Array[] = [];
      const tap = connLeg(toAlice.conn);
      const read = tap.read.bind(tap);
      tap.read = async () => {
        const chunk = await read();
        if (chunk) tapped.push(chunk.slice());
        return chunk;
      };
      splice(tap, connLeg(toBob.conn)).catch(() => {});
      const err = await within(
        calling.then((t) => {
          t.leg.abort();
          t.release(false);
          return undefined;
        }, (e) => e),
        "alice's call",
      );
      assert.ok(err, "alice took the revoked key's TLS for bob's");
      assert.equal(w.echo.accepted, 0);
    } finally {
      w.close();
    }
  },
});
