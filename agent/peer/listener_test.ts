/**
 * A caller's `PairDialer` and a provider's `PairListener` on loopback sockets,
 * joined by a minimal splicer standing in for the hub: tunnels run one after
 * another on one pooled pair; the provider decides on the caller's
 * certificate whatever the hub claimed; a revoked caller is refused before
 * any target is dialled.
 */
import assert from "node:assert/strict";
import { Logger } from "@ztm/shared/log";
import { normalizeSerial } from "@ztm/shared/crl";
import { parseCertificate } from "@ztm/shared/certs";
import { newCa } from "../../tests/fixtures/test_pki.ts";
import { Provider } from "../provider.ts";
import { PairDialer } from "./dialer.ts";
import { echoServer, signerOf, startSplicer } from "./_fixture.ts";
import { PairListener } from "./listener.ts";

const quiet = new Logger("agent", { sink: () => {} });

async function mesh(users: string[], revoked = new Set<string>()) {
  const ca = await newCa();
  const alice = await signerOf(ca, "alice");
  const bob = await signerOf(ca, "bob");
  const echo = echoServer();
  const splicer = startSplicer();
  const provider = new Provider({ owner: "bob", log: quiet, mesh: "m" });
  provider.setServices([
    { proto: "tcp", name: "echo", host: "127.0.0.1", port: echo.port, users, strict: false },
  ]);
  const listener = new PairListener({
    signer: bob,
    log: quiet,
    mesh: "m",
    revoked: () => revoked,
    serve: (open, caller) => provider.serve(open, caller),
  });
  listener.start();
  const dialer = new PairDialer({ signer: alice, log: quiet, mesh: "m", revoked: () => new Set() });
  const data = { hostname: "127.0.0.1", port: splicer.data.port };
  dialer.setDataAddress(data);
  let pairs = 0;
  /** The hub's part: the provider pre-checks the claim, then both get the same ticket. */
  const ticket = (claimedUser: string) => () => {
    provider.precheck({ proto: "tcp", name: "echo" }, { endpoint: "alice-ep", user: claimedUser });
    const sid = crypto.randomUUID().replaceAll("-", "");
    pairs++;
    listener.attach(data, sid + sid, sid);
    return Promise.resolve({ sid, ticket: sid + sid });
  };
  return {
    alice,
    echo,
    dialer,
    listener,
    ticket,
    get pairs() {
      return pairs;
    },
    close() {
      dialer.close();
      listener.close();
      provider.close();
      splicer.close();
      echo.close();
    },
  };
}

async function roundTrip(
  dialer: PairDialer,
  ticket: () => Promise<{ sid: string; ticket: string }>,
) {
  const t = await dialer.open(
    { endpoint: "bob-ep", user: "bob" },
    { proto: "tcp", name: "echo" },
    ticket,
  );
  const data = crypto.getRandomValues(new Uint8Array(50_000));
  await t.leg.write(data);
  await t.leg.closeWrite();
  const parts: Uint8Array[] = [];
  let n = 0;
  while (true) {
    const chunk = await t.leg.read();
    if (chunk === null) break;
    parts.push(chunk.slice());
    n += chunk.byteLength;
  }
  t.release(true);
  const got = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    got.set(p, at);
    at += p.byteLength;
  }
  assert.deepEqual(got, data);
}

Deno.test("tunnels run one after another on one pooled pair", async () => {
  const m = await mesh(["alice"]);
  try {
    for (let i = 0; i < 3; i++) await roundTrip(m.dialer, m.ticket("alice"));
    assert.equal(m.pairs, 1, "one ticket for three tunnels");
    assert.equal(m.dialer.pairs, 1);
    assert.equal(m.echo.accepted, 3);
  } finally {
    m.close();
  }
});

Deno.test("the provider decides on the caller's certificate, whatever the hub claimed", async () => {
  const m = await mesh(["root"]);
  try {
    // The hub claims root: the pre-check passes. Alice's certificate says alice: refused.
    await assert.rejects(roundTrip(m.dialer, m.ticket("root")), { code: "access_denied" });
    assert.equal(m.echo.accepted, 0, "the target was reached");
    // And a claim of alice is refused at the pre-check, before any pair.
    await assert.rejects(roundTrip(m.dialer, m.ticket("alice")), { code: "access_denied" });
    assert.equal(m.pairs, 1);
  } finally {
    m.close();
  }
});

Deno.test("a caller whose certificate is on the provider's CRL is refused before any target", async () => {
  const revoked = new Set<string>();
  const m = await mesh(["alice"], revoked);
  try {
    revoked.add(normalizeSerial(parseCertificate(m.alice.own.certPem).serialNumber));
    const err = await roundTrip(m.dialer, m.ticket("alice")).then(() => undefined, (e) => e);
    assert.match(String(err?.message), /revoked/, String(err));
    assert.equal(m.echo.accepted, 0);
  } finally {
    m.close();
  }
});
