/**
 * The revocation feed of a real CA process (`GET /api/revocations?since&wait`)
 * and concurrent issuing of one name.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import {
  assertError,
  call,
  inspectDatabase,
  listCertificates,
  publicKeyOfCertificate,
  publicKeyOfKeyFile,
  withDeadline,
} from "../fixtures/ca_helpers.ts";

/** How long a test waits for a long poll to wake; far below the poll's own wait. */
const WAKE_DEADLINE_MS = 15_000;

Deno.test("a long poll on the revocation feed wakes when a certificate is revoked", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  assert.equal((await call(`${ca.url}/api/certificates/root`, { method: "POST" })).status, 201);
  const serial = (await listCertificates(ca.url))[0].serial;

  let answered = false;
  const poll = call(`${ca.url}/api/revocations?since=0&wait=60`).then((r) => {
    answered = true;
    return r;
  });
  // The poll has nothing to return yet, so it is still open when the DELETE is sent.
  assert.equal(answered, false);
  const deleted = await call(`${ca.url}/api/certificates/root`, { method: "DELETE" });
  assert.equal(deleted.status, 200, deleted.text);

  const reply = await withDeadline(poll, WAKE_DEADLINE_MS, "long poll wake-up");
  assert.equal(reply.status, 200, reply.text);
  const feed = JSON.parse(reply.text);
  assert.equal(feed.seq, 1);
  assert.equal(feed.revocations.length, 1);
  assert.deepEqual(
    { seq: feed.revocations[0].seq, serial: feed.revocations[0].serial },
    { seq: 1, serial },
  );
  assert.equal(feed.revocations[0].name, "root");
  assert.equal(typeof feed.revocations[0].revokedAt, "string");
});

Deno.test("several long polls all wake on one revocation", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  assert.equal((await call(`${ca.url}/api/certificates/root`, { method: "POST" })).status, 201);
  const polls = Array.from({ length: 5 }, () => call(`${ca.url}/api/revocations?wait=60`));
  assert.equal((await call(`${ca.url}/api/certificates/root`, { method: "DELETE" })).status, 200);
  const replies = await withDeadline(Promise.all(polls), WAKE_DEADLINE_MS, "five wake-ups");
  for (const r of replies) assert.equal(JSON.parse(r.text).revocations.length, 1);
});

Deno.test("a long poll with no new revocation returns an empty list after wait=1", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  assert.equal((await call(`${ca.url}/api/certificates/root`, { method: "POST" })).status, 201);
  assert.equal((await call(`${ca.url}/api/certificates/root`, { method: "DELETE" })).status, 200);

  const reply = await withDeadline(
    call(`${ca.url}/api/revocations?since=1&wait=1`),
    WAKE_DEADLINE_MS,
    "wait=1 answer",
  );
  assert.equal(reply.status, 200);
  assert.deepEqual(JSON.parse(reply.text), { seq: 1, revocations: [] });
});

Deno.test("the revocation feed lists revocations after since, in order", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  for (const name of ["a", "b", "c"]) {
    assert.equal(
      (await call(`${ca.url}/api/certificates/${name}`, { method: "POST" })).status,
      201,
    );
  }
  for (const name of ["b", "a"]) {
    assert.equal(
      (await call(`${ca.url}/api/certificates/${name}`, { method: "DELETE" })).status,
      200,
    );
  }
  const all = JSON.parse((await call(`${ca.url}/api/revocations`)).text);
  assert.equal(all.seq, 2);
  assert.deepEqual(all.revocations.map((r: { seq: number; name: string }) => [r.seq, r.name]), [
    [1, "b"],
    [2, "a"],
  ]);
  const after1 = JSON.parse((await call(`${ca.url}/api/revocations?since=1`)).text);
  assert.deepEqual(after1.revocations.map((r: { name: string }) => r.name), ["a"]);
  const after2 = JSON.parse((await call(`${ca.url}/api/revocations?since=2&wait=0`)).text);
  assert.deepEqual(after2, { seq: 2, revocations: [] });
  // The feed's serials are the ones the list marks revoked.
  const list = await listCertificates(ca.url);
  const revoked = list.filter((c) => c.revoked).map((c) => c.serial).sort();
  assert.deepEqual(all.revocations.map((r: { serial: string }) => r.serial).sort(), revoked);
});

Deno.test("20 simultaneous POSTs for one name yield one 201 and 19 409s", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const replies = await Promise.all(
    Array.from({ length: 20 }, () => call(`${ca.url}/api/certificates/root`, { method: "POST" })),
  );
  const created = replies.filter((r) => r.status === 201);
  assert.equal(created.length, 1, replies.map((r) => r.status).join(" "));
  for (const r of replies) if (r.status !== 201) assertError(r, 409, "name_taken");

  const list = await listCertificates(ca.url);
  assert.equal(list.filter((c) => c.name === "root" && !c.revoked).length, 1);
  assert.equal(list.length, 1);

  // The one key handed out belongs to the one certificate.
  await Deno.writeTextFile(`${dir}/root.key`, created[0].text);
  const certificate = (await call(`${ca.url}/api/certificates/root`)).text;
  assert.equal(
    await publicKeyOfKeyFile(`${dir}/root.key`),
    await publicKeyOfCertificate(certificate),
  );

  await ca.stop();
  const rows = inspectDatabase(ca.database);
  assert.equal(rows.length, 1);
});

Deno.test("20 simultaneous POSTs for one name in different cases yield one certificate", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const names = Array.from({ length: 20 }, (_, i) => (i % 2 ? "Root" : "rOOT"));
  const replies = await Promise.all(
    names.map((n) => call(`${ca.url}/api/certificates/${n}`, { method: "POST" })),
  );
  assert.equal(replies.filter((r) => r.status === 201).length, 1);
  assert.equal(replies.filter((r) => r.status === 409).length, 19);
  assert.equal((await listCertificates(ca.url)).length, 1);
});
