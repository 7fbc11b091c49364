/**
 * Hellos between real certificates of a throwaway CA: a good pair checks out
 * both ways, and each failed check is refused with its reason.
 */
import assert from "node:assert/strict";
import { normalizeSerial } from "@ztm/shared/crl";
import { parseCertificate } from "@ztm/shared/certs";
import { peerName } from "@ztm/shared/peer_protocol";
import { newCa } from "../../tests/fixtures/test_pki.ts";
import { checkHello } from "./identity.ts";
import { signerOf } from "./_fixture.ts";

Deno.test("hellos check out both ways and name the peer from its certificate", async () => {
  const ca = await newCa();
  const alice = await signerOf(ca, "alice");
  const bob = await signerOf(ca, "bob");
  assert.ok(bob.canServe());
  const fromAlice = await alice.hello(alice.name, "alice-ep", bob.name, "bob-ep", "sid-1");
  const caller = await checkHello(fromAlice, {
    caPem: ca.pem,
    revoked: new Set(),
    role: "caller",
    serverName: bob.name,
    serverEndpoint: "bob-ep",
    sid: "sid-1",
  });
  assert.equal(caller.user, "alice");
  assert.equal(caller.endpoint, "alice-ep");
  const fromBob = await bob.hello(alice.name, "alice-ep", bob.name, "bob-ep", "sid-1");
  const provider = await checkHello(fromBob, {
    caPem: ca.pem,
    revoked: new Set(),
    role: "provider",
    user: "bob",
    serverName: bob.name,
    serverEndpoint: "bob-ep",
    callerName: alice.name,
    callerEndpoint: "alice-ep",
    sid: "sid-1",
  });
  assert.equal(provider.user, "bob");
});

Deno.test("a hello is refused for another pair, another server, a revoked or foreign certificate, a wrong user or an old version", async () => {
  const ca = await newCa();
  const rogueCa = await newCa();
  const alice = await signerOf(ca, "alice");
  const bob = await signerOf(ca, "bob");
  const rogue = await signerOf(rogueCa, "alice");
  const hello = await alice.hello(alice.name, "alice-ep", bob.name, "bob-ep", "sid-1");
  const want = {
    caPem: ca.pem,
    revoked: new Set<string>(),
    role: "caller" as const,
    serverName: bob.name,
    serverEndpoint: "bob-ep",
    sid: "sid-1",
  };
  await assert.rejects(checkHello(hello, { ...want, sid: "sid-2" }), /signature does not verify/);
  await assert.rejects(
    checkHello(hello, { ...want, serverName: peerName("carol") }),
    /signature does not verify/,
  );
  const serial = normalizeSerial(parseCertificate(alice.own.certPem).serialNumber);
  await assert.rejects(checkHello(hello, { ...want, revoked: new Set([serial]) }), /revoked/);
  await assert.rejects(
    checkHello(await rogue.hello(rogue.name, "alice-ep", bob.name, "bob-ep", "sid-1"), want),
    /not issued by the mesh CA/,
  );
  await assert.rejects(checkHello({ ...hello, version: 1 }, want), /protocol 2; the peer said 1/);
  await assert.rejects(checkHello(null, want), /no hello/);
  const fromBob = await bob.hello(alice.name, "alice-ep", bob.name, "bob-ep", "sid-1");
  await assert.rejects(
    checkHello(fromBob, {
      ...want,
      role: "provider",
      user: "carol",
      callerName: alice.name,
      callerEndpoint: "alice-ep",
    }),
    /user "bob", not "carol"/,
  );
});

Deno.test("a certificate without the peer name cannot serve, and a provider hello from it is refused", async () => {
  const ca = await newCa();
  const alice = await signerOf(ca, "alice");
  const old = await signerOf(ca, "bob", { role: "client" });
  assert.equal(old.canServe(), false);
  const fromOld = await old.hello(alice.name, "alice-ep", old.name, "bob-ep", "s");
  await assert.rejects(
    checkHello(fromOld, {
      caPem: ca.pem,
      revoked: new Set(),
      role: "provider",
      user: "bob",
      serverName: old.name,
      serverEndpoint: "bob-ep",
      callerName: alice.name,
      callerEndpoint: "alice-ep",
      sid: "s",
    }),
    /no serverAuth role/,
  );
});
