/**
 * `Revoker` over a real SQLite store in a temp dir: the long-poll feed and the
 * signed CRL.
 */
import assert from "node:assert/strict";
import { x509 } from "@ztm/shared/certs";
import { openCa } from "./_fixture.ts";

/** Fails when `promise` has not settled after `ms`; never leaves a timer behind. */
async function within<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Serials listed on a CRL PEM, in the store's form (lower-case hex, no leading zeros). */
function crlSerials(pem: string): string[] {
  return new x509.X509Crl(pem).entries.map((e) =>
    e.serialNumber.toLowerCase().replace(/^0+(?=.)/, "")
  );
}

Deno.test("revoke wakes a waiting revocationsSince with the new revocation", async () => {
  await using ca = await openCa();
  const { record } = await ca.issuer.issueUser("root");
  const waiting = ca.revoker.revocationsSince(0, 60_000);
  ca.revoker.revoke("root");
  const got = await within(waiting);
  assert.deepEqual(got.map((r) => [r.seq, r.serial, r.name]), [[1, record.serial, "root"]]);
});

Deno.test("revocationsSince answers at once when something is newer than since", async () => {
  await using ca = await openCa();
  await ca.issuer.issueUser("a");
  await ca.issuer.issueUser("b");
  ca.revoker.revoke("a");
  ca.revoker.revoke("b", "key lost");
  const all = await within(ca.revoker.revocationsSince(0, 60_000));
  assert.deepEqual(all.map((r) => [r.seq, r.name, r.reason]), [
    [1, "a", "revoked by administrator"],
    [2, "b", "key lost"],
  ]);
  assert.deepEqual((await ca.revoker.revocationsSince(1)).map((r) => r.name), ["b"]);
  assert.deepEqual(await ca.revoker.revocationsSince(2), []);
  assert.equal(ca.revoker.lastSeq(), 2);
});

Deno.test("an aborted signal ends a wait with an empty list", async () => {
  await using ca = await openCa();
  const abort = new AbortController();
  const waiting = ca.revoker.revocationsSince(0, 60_000, abort.signal);
  abort.abort();
  assert.deepEqual(await within(waiting), []);
});

Deno.test("close wakes every waiting revocationsSince", async () => {
  await using ca = await openCa();
  const waits = [ca.revoker.revocationsSince(0, 60_000), ca.revoker.revocationsSince(5, 60_000)];
  ca.revoker.close();
  assert.deepEqual(await within(Promise.all(waits)), [[], []]);
});

Deno.test("revoking an unknown name throws NotFound and records nothing", async () => {
  await using ca = await openCa();
  assert.throws(() => ca.revoker.revoke("ghost"), { name: "NotFound", status: 404 });
  assert.equal(ca.revoker.lastSeq(), 0);
});

Deno.test("crlPem reuses the stored CRL until a revocation, then signs one that lists it", async () => {
  await using ca = await openCa();
  const empty = await ca.revoker.crlPem();
  assert.deepEqual(crlSerials(empty), []);
  assert.equal(await ca.revoker.crlPem(), empty);
  assert.equal(ca.store.crl()?.number, 1);

  const { record } = await ca.issuer.issueUser("root");
  ca.revoker.revoke("root");
  const listed = await ca.revoker.crlPem();
  assert.deepEqual(crlSerials(listed), [record.serial]);
  assert.equal(ca.store.crl()?.number, 2);
  const crl = new x509.X509Crl(listed);
  assert.ok(await crl.verify({ publicKey: ca.signingKey.certificate.publicKey }));
  assert.equal(crl.issuer, ca.signingKey.certificate.subject);
});

Deno.test("a CRL asked for after a revocation lists it even while an older signing is running", async () => {
  await using ca = await openCa();
  const { record } = await ca.issuer.issueUser("bob");
  const before = ca.revoker.crlPem(); // starts signing a CRL without bob
  ca.revoker.revoke("bob");
  const after = ca.revoker.crlPem(); // asked after the revocation: must list bob
  assert.deepEqual(crlSerials(await after), [record.serial]);
  await before;
  assert.deepEqual(crlSerials(await ca.revoker.crlPem()), [record.serial]);
});

Deno.test("concurrent crlPem calls share one signing", async () => {
  await using ca = await openCa();
  const pems = await Promise.all(Array.from({ length: 10 }, () => ca.revoker.crlPem()));
  assert.equal(new Set(pems).size, 1);
  assert.equal(ca.store.crl()?.number, 1);
});
