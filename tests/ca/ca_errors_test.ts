/**
 * Every bad input to a real CA process answers with its status and the JSON
 * error body, and leaves the database as it was: checked through the API and,
 * after the CA stops, by opening the SQLite file itself.
 */
import assert from "node:assert/strict";
import { Harness, run } from "../fixtures/harness.ts";
import {
  assertError,
  call,
  inspectDatabase,
  listCertificates,
  makeCsr,
} from "../fixtures/ca_helpers.ts";

Deno.test("CA refuses bad names with 400 on POST, GET and DELETE and stores nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const bad = [
    ".x",
    "-x",
    "a".repeat(65),
    "a b",
    "ünï",
    "名前",
    "a/b",
    "a\u0000b",
    "ca",
    "CA",
    "Ca",
  ];

  for (const name of bad) {
    const path = `${ca.url}/api/certificates/${encodeURIComponent(name)}`;
    const message = assertError(await call(path, { method: "POST" }), 400, "bad_name");
    assert.ok(message.length < 200, message);
    assertError(await call(path, { method: "DELETE" }), 400, "bad_name");
    if (name !== "ca") assertError(await call(path), 400, "bad_name");
  }
  assertError(await call(`${ca.url}/api/certificates/%E0%A4%A`), 400, "bad_path");
  assert.deepEqual(await listCertificates(ca.url), []);

  // The edges of the rule are accepted.
  for (const name of ["a".repeat(64), "x", "_x", "a.b-c_D9"]) {
    const reply = await call(`${ca.url}/api/certificates/${name}`, { method: "POST" });
    assert.equal(reply.status, 201, `${name}: ${reply.text}`);
  }
  await ca.stop();
  assert.deepEqual(
    inspectDatabase(ca.database).map((r) => r.name).sort(),
    ["_x", "a".repeat(64), "a.b-c_D9", "x"].sort(),
  );
});

Deno.test("CA names are unique without regard to case", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const cert = `${ca.url}/api/certificates`;

  assert.equal((await call(`${cert}/root`, { method: "POST" })).status, 201);
  assertError(await call(`${cert}/Root`, { method: "POST" }), 409, "name_taken");
  assertError(await call(`${cert}/ROOT`, { method: "POST" }), 409, "name_taken");
  const { csr } = await makeCsr(dir, "Root", { cn: "Root" });
  assertError(await call(`${cert}/Root`, { method: "POST", body: csr }), 409, "name_taken");

  // Any case finds and revokes the one certificate.
  const live = await call(`${cert}/root`);
  assert.equal((await call(`${cert}/rOOt`)).text, live.text);
  const revoked = await call(`${cert}/ROOT`, { method: "DELETE" });
  assert.equal(revoked.status, 200, revoked.text);
  assert.equal(JSON.parse(revoked.text).revoked.name, "root");
  assertError(await call(`${cert}/root`), 404, "unknown_certificate");

  // After the revocation the name is free again, in any case.
  assert.equal((await call(`${cert}/Root`, { method: "POST", body: csr })).status, 201);
  const list = await listCertificates(ca.url);
  assert.deepEqual(list.map((c) => [c.name, c.revoked]), [["root", true], ["Root", false]]);
  await ca.stop();
  const rows = inspectDatabase(ca.database);
  assert.equal(rows.filter((r) => !r.revoked).length, 1);
});

Deno.test("a second POST for a live name answers 409 and keeps the first certificate", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const url = `${ca.url}/api/certificates/root`;
  assert.equal((await call(url, { method: "POST" })).status, 201);
  const first = (await call(url)).text;
  const message = assertError(await call(url, { method: "POST" }), 409, "name_taken");
  assert.match(message, /"root"/);
  assert.equal((await call(url)).text, first);
  assert.equal((await listCertificates(ca.url)).length, 1);
});

Deno.test("unknown certificates answer 404 on GET and DELETE", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const message = assertError(
    await call(`${ca.url}/api/certificates/nobody`),
    404,
    "unknown_certificate",
  );
  assert.equal(message, 'Unknown certificate "nobody"');
  assertError(
    await call(`${ca.url}/api/certificates/nobody`, { method: "DELETE" }),
    404,
    "unknown_certificate",
  );
  // A revoked certificate cannot be revoked twice.
  assert.equal((await call(`${ca.url}/api/certificates/bob`, { method: "POST" })).status, 201);
  assert.equal((await call(`${ca.url}/api/certificates/bob`, { method: "DELETE" })).status, 200);
  assertError(
    await call(`${ca.url}/api/certificates/bob`, { method: "DELETE" }),
    404,
    "unknown_certificate",
  );
  const feed = JSON.parse((await call(`${ca.url}/api/revocations`)).text);
  assert.equal(feed.revocations.length, 1);
});

Deno.test("a wrong method answers 405 with an Allow header", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const cases: [string, string, string[]][] = [
    ["PUT", "/api/certificates/root", ["DELETE", "GET", "POST"]],
    ["PATCH", "/api/certificates/root", ["DELETE", "GET", "POST"]],
    ["POST", "/api/crl", ["GET"]],
    ["DELETE", "/api/certificates", ["GET"]],
    ["POST", "/api/revocations", ["GET"]],
    ["GET", "/api/hub-certificates", ["POST"]],
  ];
  for (const [method, path, allow] of cases) {
    const reply = await call(`${ca.url}${path}`, { method });
    assertError(reply, 405, "method_not_allowed");
    const header = (reply.headers.get("allow") ?? "").split(",").map((m) => m.trim());
    assert.deepEqual(header.sort(), allow, `${method} ${path}: allow ${header}`);
  }
  assert.deepEqual(await listCertificates(ca.url), []);
});

Deno.test("an unknown route answers 404", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  for (const path of ["/", "/api", "/api/nope", "/api/certificates/root/extra", "/api/crl/x"]) {
    const message = assertError(await call(`${ca.url}${path}`), 404, "unknown_route");
    assert.match(message, /No route/);
  }
  assertError(await call(`${ca.url}/api/nope`, { method: "POST" }), 404, "unknown_route");
});

Deno.test("a body over 16 KiB answers 413 and issues nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const url = `${ca.url}/api/certificates/root`;
  const big = "x".repeat(16 * 1024 + 1);

  // Declared length over the limit.
  assertError(await call(url, { method: "POST", body: big }), 413, "body_too_large");
  // No declared length (chunked): the limit holds while reading.
  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 17; i++) c.enqueue(new TextEncoder().encode("y".repeat(1024)));
      c.close();
    },
  });
  assertError(await call(url, { method: "POST", body: chunked }), 413, "body_too_large");
  // Through curl, as a user would send a file.
  await Deno.writeTextFile(`${dir}/big.csr`, big);
  const out = await run("curl", [
    "-s",
    "-o",
    `${dir}/reply.json`,
    "-w",
    "%{http_code}",
    "--data-binary",
    `@${dir}/big.csr`,
    url,
  ], { allowFail: true });
  assert.equal(out.stdout, "413");
  assert.equal(
    JSON.parse(await Deno.readTextFile(`${dir}/reply.json`)).error.code,
    "body_too_large",
  );
  // The hub route has the same limit (with the token).
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  assertError(
    await call(`${ca.url}/api/hub-certificates`, {
      method: "POST",
      body: big,
      headers: { authorization: `Bearer ${token}` },
    }),
    413,
    "body_too_large",
  );
  assertError(await call(url), 404, "unknown_certificate");
  assert.deepEqual(await listCertificates(ca.url), []);

  // A CSR padded to exactly 16 KiB is still read.
  const { csr } = await makeCsr(dir, "root", { cn: "root" });
  const padded = csr + " ".repeat(16 * 1024 - new TextEncoder().encode(csr).length);
  const ok = await call(url, { method: "POST", body: padded });
  assert.equal(ok.status, 201, ok.text);
});

Deno.test("a body that is not a CSR answers 400 and issues nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const url = `${ca.url}/api/certificates/root`;
  const caPem = (await call(`${ca.url}/api/certificates/ca`)).text;
  const bodies = [
    "hello",
    '{"name":"root"}',
    caPem,
    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    "-----BEGIN CERTIFICATE REQUEST-----\n" + caPem.split("\n").slice(1, -2).join("\n") +
    "\n-----END CERTIFICATE REQUEST-----\n",
  ];
  for (const body of bodies) {
    assertError(await call(url, { method: "POST", body }), 400, "bad_csr");
  }
  assertError(
    await call(url, { method: "POST", body: new Uint8Array([0xff, 0xfe, 0x00, 0x80]) }),
    400,
    "bad_encoding",
  );
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  for (const body of ["", "hello", caPem]) {
    assertError(
      await call(`${ca.url}/api/hub-certificates`, {
        method: "POST",
        body,
        headers: { authorization: `Bearer ${token}` },
      }),
      400,
      "bad_csr",
    );
  }
  assertError(await call(url), 404, "unknown_certificate");
  await ca.stop();
  assert.deepEqual(inspectDatabase(ca.database), []);
});

Deno.test("bad since or wait on the revocation feed answers 400", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const queries = [
    "since=abc",
    "since=-1",
    "since=1.5",
    "since=1e3",
    "since=0x10",
    "since=9999999999999999",
    "wait=x",
    "wait=-1",
    "wait=0.5",
    "since=0&wait=ten",
  ];
  for (const q of queries) {
    const message = assertError(
      await call(`${ca.url}/api/revocations?${q}`),
      400,
      "bad_query",
    );
    assert.match(message, /"(since|wait)"/, q);
  }
  const ok = await call(`${ca.url}/api/revocations?since=0&wait=0`);
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.text), { seq: 0, revocations: [] });
});
