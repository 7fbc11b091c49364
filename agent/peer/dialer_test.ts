/**
 * The caller's pair pool, over real TLS pairs on loopback (a splicer stands
 * in for the hub's data port): bounds per peer in all and idle, idle pairs
 * closing, unclean tunnels dropping their pair, a provider's refusal keeping
 * it, revocation and a hub's loss closing pairs, and each way a fresh pair
 * fails before any tunnel byte with its own code.
 */
import assert from "node:assert/strict";
import { parseCertificate } from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";
import type { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import { deadline } from "../proxy/_fixture.ts";
import { dataKey, type OpenTunnel, PairDialer, type PeerTarget } from "./dialer.ts";
import { type PairMesh, startPairMesh } from "./_fixture.ts";

const ECHO = { proto: "tcp", name: "echo" } as const;
const enc = new TextEncoder();
const dec = new TextDecoder();

function target(endpoint = "bob-ep", user = "bob"): PeerTarget {
  return { endpoint, user };
}

/** Opens a tunnel to `endpoint`'s echo on a pooled or fresh pair. */
function open(m: PairMesh, endpoint = "bob-ep"): Promise<OpenTunnel> {
  return deadline(m.dialer.open(target(endpoint), ECHO, m.ticket(endpoint)), 10_000, "a tunnel");
}

/** Sends `text` through `t`, reads the echo to its end, and releases the tunnel clean. */
async function echo(t: OpenTunnel, text: string): Promise<void> {
  await t.leg.write(enc.encode(text));
  await t.leg.closeWrite();
  let got = "";
  while (true) {
    const chunk = await deadline(t.leg.read(), 5_000, "the echo");
    if (chunk === null) break;
    got += dec.decode(chunk);
  }
  assert.equal(got, text);
  t.release(true);
}

/** Polls `check` until true, for at most `ms`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("a tunnel released unclean takes its pair with it; the next one asks for a fresh pair", async () => {
  using m = await startPairMesh();
  await echo(await open(m), "one");
  assert.equal(m.dialer.pairs, 1);
  const second = await open(m);
  assert.equal(m.tickets, 1, "the idle pair was reused");
  second.release(false);
  second.release(true); // a second release changes nothing
  assert.equal(m.dialer.pairs, 0);
  await echo(await open(m), "three");
  assert.equal(m.tickets, 2);
});

Deno.test("pairs per peer are bounded in all and idle", async () => {
  using m = await startPairMesh({ dialer: { maxPerPeer: 2, maxIdlePerPeer: 1 } });
  const a = await open(m);
  const b = await open(m);
  await assert.rejects(open(m), (e: ZtmError) => {
    assert.equal(e.status, 429);
    assert.equal(e.code, "too_many_pairs");
    assert.match(e.message, /Already 2 pair connections to endpoint bob-ep/);
    return true;
  });
  assert.equal(m.tickets, 2, "no ticket is asked for past the bound");
  await echo(a, "a");
  await echo(b, "b");
  assert.equal(m.dialer.pairs, 1, "one idle pair is kept, the other closed");
  // Another peer has its own bound.
  await assert.rejects(
    m.dialer.open(target("bob-ep", "carol"), ECHO, () => Promise.reject(new Error("hub down"))),
    /hub down/,
  );
});

Deno.test("an idle pair closes after the idle time", async () => {
  using m = await startPairMesh({ dialer: { idleMs: 50 } });
  await echo(await open(m), "x");
  assert.equal(m.dialer.pairs, 1);
  await until(() => m.dialer.pairs === 0, 3_000, "the idle pair's end");
});

Deno.test("a provider's refusal inside a pair is thrown and the pair kept for the next tunnel", async () => {
  using m = await startPairMesh();
  await assert.rejects(
    deadline(
      m.dialer.open(target(), { proto: "tcp", name: "nope" }, m.ticket("bob-ep")),
      10_000,
      "the refusal",
    ),
    (e: ZtmError) => e.status === 404 && e.code === "unknown_service",
  );
  assert.equal(m.dialer.pairs, 1);
  await echo(await open(m), "after");
  assert.equal(m.tickets, 1);
});

Deno.test("revocation closes the pairs of the revoked peer only; a hub's loss closes its pairs", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1", "bob-2"] });
  await echo(await open(m, "bob-1"), "1");
  await echo(await open(m, "bob-2"), "2");
  assert.equal(m.dialer.pairs, 2);
  const serial = normalizeSerial(
    parseCertificate(m.providers.get("bob-1")!.signer.own.certPem).serialNumber,
  );
  m.dialer.revoke(new Set([serial, "00ff"]));
  assert.equal(m.dialer.pairs, 1);
  await echo(await open(m, "bob-2"), "still pooled");
  assert.equal(m.tickets, 2);
  m.dialer.dropHub({ hostname: "127.0.0.1", port: m.data.port + 1 });
  assert.equal(m.dialer.pairs, 1, "another hub's loss closes nothing here");
  m.dialer.dropHub(m.data);
  assert.equal(m.dialer.pairs, 0);
  assert.equal(dataKey(m.data), `127.0.0.1:${m.data.port}`);
});

Deno.test("a fresh pair fails with its own code: no data port, a dead one, a hub's refusal, another user's provider", async () => {
  using m = await startPairMesh();
  const quiet = new Logger("agent", { sink: () => {} });
  const bare = new PairDialer({ signer: m.alice, log: quiet, mesh: "m", revoked: () => new Set() });
  const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadData = { hostname: "127.0.0.1", port: dead.addr.port };
  dead.close();
  try {
    let asked = 0;
    const ticket = () => {
      asked++;
      return m.ticket("bob-ep")();
    };
    await assert.rejects(
      bare.open(target(), ECHO, ticket),
      (e: ZtmError) => e.status === 503 && e.code === "no_data_port",
    );
    assert.equal(asked, 0, "no ticket without a data port");
    await assert.rejects(
      deadline(bare.open(target(), ECHO, ticket, deadData), 10_000, "the refusal"),
      (e: ZtmError) => e.status === 503 && e.code === "data_port_unreachable",
    );
    await assert.rejects(
      bare.open(target(), ECHO, () => Promise.reject(new Error("ticket refused")), m.data),
      /ticket refused/,
    );
    // Bob's endpoint cannot present carol's peer name: the TLS handshake fails.
    await assert.rejects(
      deadline(m.dialer.open(target("bob-ep", "carol"), ECHO, ticket), 10_000, "the refusal"),
      (e: ZtmError) => e.code === "peer_refused" && /not carol's/.test(e.message),
    );
    assert.equal(m.providers.get("bob-ep")!.echo.accepted, 0, "no target was reached");
    assert.equal(bare.pairs + m.dialer.pairs, 0);
    // None of the failures counted against the peer's bound.
    using one = await startPairMesh({ dialer: { maxPerPeer: 1 } });
    const granted = () => Promise.resolve({ sid: "0".repeat(32), ticket: "0".repeat(64) });
    await assert.rejects(
      deadline(one.dialer.open(target(), ECHO, granted, deadData), 10_000, "the refusal"),
      (e: ZtmError) => e.code === "data_port_unreachable",
    );
    await echo(await open(one), "fits");
  } finally {
    bare.close();
  }
});
