/**
 * The hub's identity against a stand-in CA that signs with a test CA: a
 * fresh hub makes its key and gets a certificate for its names, a restart
 * reuses what it cached unless a name, the CA or the expiry says otherwise,
 * refusals the CA will repeat are final, and a CA that is down is waited for
 * unless a cached identity will do.
 */
import assert from "node:assert/strict";
import { altNamesOf, keyPairOfPem, parseCertificate } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { deadUrl, signHubCsr, StandInCa } from "../tests/fixtures/stand_in_ca.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { enroll, type EnrollOptions, identityFiles, Refused } from "./enroll.ts";

/** A stand-in CA serving `ca` and signing hub certificates (valid `lifetimeMs`) with it. */
function caServing(state: { ca: TestCa; lifetimeMs?: number }): StandInCa {
  return new StandInCa({
    "GET /api/certificates/ca": () => new Response(state.ca.pem),
    "POST /api/hub-certificates": async (req) =>
      new Response(await signHubCsr(state.ca, req.body, { lifetimeMs: state.lifetimeMs })),
  });
}

async function dataDir() {
  const dir = await Deno.makeTempDir({ prefix: "ztm-enroll-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

function options(caUrl: string, dir: string, extra: Partial<EnrollOptions> = {}) {
  const logs: Record<string, unknown>[] = [];
  const opts: EnrollOptions = {
    caUrl,
    dataDir: dir,
    hosts: ["hub.example", "127.0.0.1"],
    token: "tok",
    log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }),
    // enroll() retries until the CA answers: a test that breaks that gives up here.
    signal: AbortSignal.timeout(10_000),
    ...extra,
  };
  return { opts, logs };
}

async function spkiHex(publicKey: CryptoKey): Promise<string> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", publicKey)).toHex();
}

Deno.test("a fresh hub makes its key, gets a certificate for its names with the CA token, and keeps them 0600", async () => {
  const state = { ca: await newCa() };
  await using standIn = caServing(state);
  await using d = await dataDir();
  const { opts, logs } = options(standIn.url, d.dir);
  const identity = await enroll(opts);
  assert.equal(identity.caPem, state.ca.pem);
  const cert = parseCertificate(identity.certPem);
  assert.deepEqual(altNamesOf(cert), ["hub.example", "127.0.0.1"]);
  const keys = await keyPairOfPem(identity.keyPem);
  assert.equal(await spkiHex(keys.publicKey), new Uint8Array(cert.publicKey.rawData).toHex());
  const files = identityFiles(d.dir);
  for (
    const [file, text] of [
      [files.ca, identity.caPem],
      [files.key, identity.keyPem],
      [files.cert, identity.certPem],
    ]
  ) {
    assert.equal(await Deno.readTextFile(file), text);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, file);
  }
  const [post] = standIn.requestsTo("POST /api/hub-certificates");
  assert.equal(post.authorization, "Bearer tok");
  assert.equal(post.contentType, "application/pkcs10");
  assert.ok(logs.some((l) => l.msg === "hub key created"));
  assert.ok(logs.some((l) => l.msg === "hub certificate issued"));
  assert.ok(!JSON.stringify(logs).includes("PRIVATE KEY"), "the key is never logged");
});

Deno.test("a restart reuses the cached key and certificate; a new name or a new CA gets a new certificate of the same key", async () => {
  const state = { ca: await newCa() };
  await using standIn = caServing(state);
  await using d = await dataDir();
  const first = await enroll(options(standIn.url, d.dir).opts);
  const again = await enroll(options(standIn.url, d.dir).opts);
  assert.deepEqual(again, first);
  assert.equal(standIn.requestsTo("POST /api/hub-certificates").length, 1);

  const hosts = ["hub.example", "127.0.0.1", "hub2.example"];
  const named = await enroll(options(standIn.url, d.dir, { hosts }).opts);
  assert.equal(standIn.requestsTo("POST /api/hub-certificates").length, 2);
  assert.deepEqual(altNamesOf(parseCertificate(named.certPem)), hosts);
  assert.equal(named.keyPem, first.keyPem, "the key stays");

  state.ca = await newCa();
  const { opts, logs } = options(standIn.url, d.dir, { hosts });
  const moved = await enroll(opts);
  assert.equal(moved.caPem, state.ca.pem);
  assert.equal(await Deno.readTextFile(identityFiles(d.dir).ca), state.ca.pem);
  assert.equal(standIn.requestsTo("POST /api/hub-certificates").length, 3);
  assert.ok(logs.some((l) => l.msg === "mesh ca changed; replacing the hub certificate"));
  assert.equal(moved.keyPem, first.keyPem);
});

Deno.test("a cached certificate within 30 days of its end is replaced at start", async () => {
  const state = { ca: await newCa(), lifetimeMs: 20 * 24 * 3_600_000 };
  await using standIn = caServing(state);
  await using d = await dataDir();
  await enroll(options(standIn.url, d.dir).opts);
  state.lifetimeMs = 40 * 24 * 3_600_000;
  await enroll(options(standIn.url, d.dir).opts);
  assert.equal(standIn.requestsTo("POST /api/hub-certificates").length, 2);
  await enroll(options(standIn.url, d.dir).opts);
  assert.equal(standIn.requestsTo("POST /api/hub-certificates").length, 2);
});

Deno.test("refusals the CA will repeat are final: a 4xx, no token, a CA certificate that is no CA's", async () => {
  const state = { ca: await newCa() };
  await using standIn = caServing(state);
  {
    await using d = await dataDir();
    const { opts } = options(standIn.url, d.dir, { token: undefined });
    await assert.rejects(
      enroll(opts),
      (err) => err instanceof Refused && /No CA token/.test(err.message),
    );
  }
  {
    await using d = await dataDir();
    standIn.routes["POST /api/hub-certificates"] = () => new Response("bad token", { status: 401 });
    await assert.rejects(
      enroll(options(standIn.url, d.dir).opts),
      (err) => err instanceof Refused && /\(401\): bad token$/.test(err.message),
    );
  }
  {
    await using d = await dataDir();
    const leaf = await newLeaf(state.ca, { name: "hub", role: "server" });
    standIn.routes["GET /api/certificates/ca"] = () => new Response(leaf.certificate);
    await assert.rejects(
      enroll(options(standIn.url, d.dir).opts),
      (err) => err instanceof Refused && /not a CA certificate/.test(err.message),
    );
  }
});

Deno.test("with the CA down a cached identity is used; with none, enroll retries until its signal aborts", async () => {
  const state = { ca: await newCa() };
  await using standIn = caServing(state);
  await using d = await dataDir();
  const cached = await enroll(options(standIn.url, d.dir).opts);
  const down = deadUrl();
  const { opts, logs } = options(down, d.dir);
  assert.deepEqual(await enroll(opts), cached);
  assert.ok(logs.some((l) => l.msg === "ca unreachable, using the cached ca certificate"));

  await using fresh = await dataDir();
  const waiting = options(down, fresh.dir, { signal: AbortSignal.timeout(200) });
  await assert.rejects(enroll(waiting.opts));
  assert.ok(waiting.logs.some((l) => l.msg === "ca unreachable, retrying"));
  assert.ok(!waiting.logs.some((l) => String(l.msg).includes("cached")), "there is no cache");
  await assert.rejects(Deno.stat(identityFiles(fresh.dir).cert), Deno.errors.NotFound);
});
