/**
 * Signed management requests and answers with certificates made in-process:
 * a request verifies once at the endpoint it names, and each field a hub
 * could forge, alter, retarget or replay is refused with its own code; an
 * answer verifies only for the request it answers, from the endpoint and
 * user asked. Hub-level attacks are in `tests/security/`.
 */
import assert from "node:assert/strict";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";
import { parseCertificate } from "./certs.ts";
import { normalizeSerial } from "./crl.ts";
import {
  ANSWER_FORMAT,
  type AnswerContext,
  answerText,
  canonicalText,
  MAX_SIGNED_BODY_BYTES,
  MAX_SIGNED_REQUEST_AHEAD_MS,
  NonceCache,
  parseSignedRequest,
  signAnswer,
  SIGNED_REQUEST_LIFETIME_MS,
  type SignedRequest,
  signRequest,
  verifyAnswer,
  type VerifyContext,
  verifySignedRequest,
} from "./signed_request.ts";

const TARGET = "ep-0123456789abcdef0123456789abcdef";
const FROM = "ep-fedcba9876543210fedcba9876543210";
const REQ = {
  method: "POST",
  path: "services/tcp/web",
  body: '{"port":80}',
  target: TARGET,
  from: FROM,
};

/** A mesh CA, a user "alice" who signs, and a verify context for `TARGET`. */
async function mesh() {
  const ca = await newCa();
  const alice = await newLeaf(ca, { name: "alice" });
  const serial = normalizeSerial(parseCertificate(alice.certificate).serialNumber);
  const ctx = (over: Partial<VerifyContext> = {}): VerifyContext => ({
    caPem: ca.pem,
    revoked: new Set(),
    endpointId: TARGET,
    nonces: new NonceCache(),
    ...over,
  });
  return { ca, alice, serial, ctx };
}

Deno.test("a signed request verifies at the endpoint it names and returns the signer", async () => {
  const { alice, serial, ctx } = await mesh();
  const now = Date.now();
  const r = await signRequest(REQ, alice, now);
  assert.equal(r.expires, now + SIGNED_REQUEST_LIFETIME_MS);
  assert.match(r.nonce, /^[0-9a-f]{32}$/);
  assert.deepEqual(await verifySignedRequest(r, ctx({ now })), { user: "alice", serial });
  // It travels as JSON and parses back to the same request.
  assert.deepEqual(parseSignedRequest(JSON.parse(JSON.stringify(r))), r);
});

Deno.test("canonicalText covers every field but the certificate and signature", async () => {
  const base = { ...REQ, nonce: "00", expires: 1 };
  const text = await canonicalText(base);
  const lines = text.split("\n");
  assert.equal(lines.length, 8);
  assert.deepEqual(lines.slice(0, 3), ["ztm-management-v1", "POST", "services/tcp/web"]);
  assert.match(lines[3], /^[0-9a-f]{64}$/);
  assert.deepEqual(lines.slice(4), [TARGET, FROM, "00", "1"]);
  for (
    const change of [
      { method: "DELETE" },
      { path: "log" },
      { body: "" },
      { target: FROM },
      { from: TARGET },
      { nonce: "01" },
      { expires: 2 },
    ]
  ) {
    assert.notEqual(await canonicalText({ ...base, ...change }), text, JSON.stringify(change));
  }
});

Deno.test("verifySignedRequest refuses any field changed after signing, and spends no nonce on it", async () => {
  const { alice, ctx } = await mesh();
  const now = Date.now();
  const r = await signRequest(REQ, alice, now);
  const nonces = new NonceCache();
  for (
    const change of [
      { method: "DELETE" },
      { path: "services/tcp/ssh" },
      { body: '{"port":22}' },
      { from: "ep-00000000000000000000000000000000" },
      { nonce: "00".repeat(16) },
      { expires: r.expires - 1 },
      { signature: "AAAA" },
      { signature: "not base64!" },
    ]
  ) {
    await assert.rejects(
      verifySignedRequest({ ...r, ...change }, ctx({ now, nonces })),
      { name: "Unauthorized", status: 401, code: "bad_signature" },
      JSON.stringify(change),
    );
  }
  // None of those spent the real nonce: the untouched request still verifies once, then is a replay.
  await verifySignedRequest(r, ctx({ now, nonces }));
  await assert.rejects(verifySignedRequest(r, ctx({ now, nonces })), {
    status: 401,
    code: "replayed_request",
  });
});

Deno.test("verifySignedRequest refuses another endpoint's request with 403 wrong_target", async () => {
  const { alice, ctx } = await mesh();
  const r = await signRequest({ ...REQ, target: FROM }, alice);
  await assert.rejects(verifySignedRequest(r, ctx()), {
    name: "Forbidden",
    code: "wrong_target",
  });
  // Retargeting it breaks the signature instead.
  await assert.rejects(verifySignedRequest({ ...r, target: TARGET }, ctx()), {
    code: "bad_signature",
  });
});

Deno.test("verifySignedRequest refuses a request past its expiry or expiring too far ahead", async () => {
  const { alice, ctx } = await mesh();
  const now = Date.now();
  const r = await signRequest(REQ, alice, now);
  // At the expiry itself it still verifies; one ms later it does not.
  await verifySignedRequest(r, ctx({ now: r.expires }));
  await assert.rejects(verifySignedRequest(r, ctx({ now: r.expires + 1 })), {
    code: "expired_request",
    message: "The signed request has expired",
  });
  // Signed with a clock far ahead: the expiry is beyond the replay window.
  const ahead = await signRequest(REQ, alice, now + MAX_SIGNED_REQUEST_AHEAD_MS);
  await assert.rejects(verifySignedRequest(ahead, ctx({ now })), {
    code: "expired_request",
    message: "The signed request expires too far ahead",
  });
  const edge = await signRequest(
    REQ,
    alice,
    now + MAX_SIGNED_REQUEST_AHEAD_MS - SIGNED_REQUEST_LIFETIME_MS,
  );
  await verifySignedRequest(edge, ctx({ now }));
});

Deno.test("verifySignedRequest refuses signers the mesh does not trust", async () => {
  const { ca, alice, serial, ctx } = await mesh();
  const other = await newCa();
  const stranger = await newLeaf(other, { name: "alice" });
  const hub = await newLeaf(ca, { name: "hub", role: "server" });
  const old = await newLeaf(ca, {
    name: "alice",
    now: new Date(Date.now() - 10 * 86_400_000),
    days: 1,
  });
  const cases: [string, SignedRequest, Partial<VerifyContext>, string][] = [
    ["another CA", await signRequest(REQ, stranger), {}, "untrusted_certificate"],
    ["a hub certificate", await signRequest(REQ, hub), {}, "untrusted_certificate"],
    ["an expired certificate", await signRequest(REQ, old), {}, "untrusted_certificate"],
    ["a revoked certificate", await signRequest(REQ, alice), {
      revoked: new Set([serial]),
    }, "revoked_certificate"],
    [
      "garbage",
      { ...await signRequest(REQ, alice), certificate: "junk" },
      {},
      "untrusted_certificate",
    ],
  ];
  for (const [what, r, over, code] of cases) {
    await assert.rejects(verifySignedRequest(r, ctx(over)), { status: 401, code }, what);
  }
  // A signer with another key than the certificate it sends.
  const swapped = { ...await signRequest(REQ, { ...alice, privateKey: hub.privateKey }) };
  await assert.rejects(verifySignedRequest(swapped, ctx()), { code: "bad_signature" });
  // During a CA rotation the bundle holds both CAs, and either one's users verify.
  const both = ctx({ caPem: ca.pem + other.pem });
  assert.equal((await verifySignedRequest(await signRequest(REQ, stranger), both)).user, "alice");
});

Deno.test("parseSignedRequest names the bad field of untrusted JSON", async () => {
  const { alice } = await mesh();
  const good = JSON.parse(JSON.stringify(await signRequest(REQ, alice)));
  const refusals: [unknown, RegExp][] = [
    [null, /Not an object/],
    ["text", /Not an object/],
    [{ ...good, method: 1 }, /"method" must be a string/],
    [{ ...good, signature: undefined }, /"signature" must be a string/],
    [{ ...good, from: "ep-1\nforged line" }, /"from" holds control characters/],
    [{ ...good, path: "log\u001b[31m" }, /"path" holds control characters/],
    [{ ...good, target: "a\u0085b" }, /"target" holds control characters/],
    [{ ...good, expires: "1" }, /"expires" must be a whole number/],
    [{ ...good, expires: 1.5 }, /"expires" must be a whole number/],
    [{ ...good, expires: 2 ** 53 }, /"expires" must be a whole number/],
    [{ ...good, body: "x".repeat(MAX_SIGNED_BODY_BYTES + 1) }, /Body is too large/],
    // The limit is in UTF-8 bytes, not characters.
    [{ ...good, body: "é".repeat(MAX_SIGNED_BODY_BYTES / 2 + 1) }, /Body is too large/],
  ];
  for (const [value, message] of refusals) {
    assert.throws(
      () => parseSignedRequest(value),
      { name: "BadRequest", code: "bad_signed_request", message },
      JSON.stringify(value)?.slice(0, 80),
    );
  }
  // The body may hold newlines (it is hashed, not logged) and be exactly the limit.
  parseSignedRequest({ ...good, body: "a\nb" });
  parseSignedRequest({ ...good, body: "x".repeat(MAX_SIGNED_BODY_BYTES) });
});

Deno.test("NonceCache accepts a nonce once, drops expired ones when full, and refuses 429 when full of live ones", () => {
  const cache = new NonceCache(2);
  assert.equal(cache.add("a", 100, 0), true);
  assert.equal(cache.add("a", 100, 0), false);
  assert.equal(cache.add("b", 200, 0), true);
  // Full, and both live at 50.
  assert.throws(() => cache.add("c", 300, 50), {
    name: "TooManyRequests",
    code: "too_many_requests",
  });
  // At 150 "a" has expired: it makes room, and is then new again.
  assert.equal(cache.add("c", 300, 150), true);
  assert.equal(cache.add("b", 300, 150), false);
  assert.throws(() => cache.add("d", 400, 150), { code: "too_many_requests" });
});

/** Alice asks `TARGET` (an endpoint of bob's) something; bob signs the answer. */
async function exchange() {
  const m = await mesh();
  const bob = { ...await newLeaf(m.ca, { name: "bob" }), endpointId: TARGET };
  const request = await signRequest(REQ, m.alice);
  const actx: AnswerContext = {
    caPem: m.ca.pem,
    revoked: new Set<string>(),
    endpointId: TARGET,
    user: "bob",
  };
  return { ...m, bob, request, actx };
}

Deno.test("a signed answer verifies for its request, endpoint and user", async () => {
  const { bob, request, actx } = await exchange();
  const answer = await signAnswer(request, { status: 201, body: '{"ok":true}' }, bob);
  assert.equal(answer.format, ANSWER_FORMAT);
  assert.equal(answer.endpoint, TARGET);
  assert.deepEqual(await verifyAnswer(201, JSON.stringify(answer), request, actx), {
    status: 201,
    body: '{"ok":true}',
  });
  // The signed text binds the request's canonical text, the endpoint, the status and the body.
  const text = await answerText(request, { endpoint: TARGET, status: 201, body: '{"ok":true}' });
  assert.equal(text.split("\n")[0], ANSWER_FORMAT);
  assert.equal(text.split("\n").length, 5);
  // A signed error answer verifies the same way.
  const refusal = await signAnswer(request, { status: 403, body: "{}" }, bob);
  assert.deepEqual(await verifyAnswer(403, JSON.stringify(refusal), request, actx), {
    status: 403,
    body: "{}",
  });
});

Deno.test("verifyAnswer passes an unsigned error on and refuses an unsigned success", async () => {
  const { request, actx } = await exchange();
  const hubRefusal = '{"error":{"code":"endpoint_offline","message":"Offline"}}';
  assert.deepEqual(await verifyAnswer(503, hubRefusal, request, actx), {
    status: 503,
    body: hubRefusal,
  });
  for (const text of ['{"ok":true}', "", "not json", '{"format":"ztm-management-answer-v0"}']) {
    await assert.rejects(verifyAnswer(200, text, request, { ...actx, endpointName: "laptop" }), {
      status: 502,
      code: "unsigned_answer",
      message: /endpoint "laptop" is not signed/,
    });
  }
});

Deno.test("verifyAnswer refuses a forged, altered, misdirected or untrusted answer with 502 forged_answer", async () => {
  const { ca, alice, bob, request, actx } = await exchange();
  const signed = await signAnswer(request, { status: 201, body: "created" }, bob);
  const otherRequest = await signRequest(REQ, alice);
  const stranger = { ...await newLeaf(await newCa(), { name: "bob" }), endpointId: TARGET };
  const hubCert = { ...await newLeaf(ca, { name: "bob", role: "server" }), endpointId: TARGET };
  const bobSerial = normalizeSerial(parseCertificate(bob.certificate).serialNumber);
  const cases: [string, number, unknown, Partial<AnswerContext>, RegExp][] = [
    ["a malformed status", 201, { ...signed, status: "201" }, {}, /not a well-formed/],
    ["a missing body", 201, { ...signed, body: undefined }, {}, /not a well-formed/],
    ["another status than signed", 200, signed, {}, /came with status 200, signed 201/],
    ["an altered body", 201, { ...signed, body: "deleted" }, {}, /does not verify/],
    ["a re-labelled status", 500, { ...signed, status: 500 }, {}, /does not verify/],
    ["another endpoint", 201, signed, { endpointId: FROM }, /signed for another endpoint/],
    [
      "a certificate that does not parse",
      201,
      { ...signed, certificate: "x" },
      {},
      /does not parse/,
    ],
    ["another user", 201, signed, { user: "carol" }, /signed by user "bob", not by "carol"/],
    ["a revoked signer", 201, signed, { revoked: new Set([bobSerial]) }, /revoked/],
    [
      "another CA",
      201,
      await signAnswer(request, { status: 201, body: "created" }, stranger),
      {},
      /from another CA/,
    ],
    [
      "a hub's certificate",
      201,
      await signAnswer(request, { status: 201, body: "created" }, hubCert),
      {},
      /not signed by an endpoint's certificate/,
    ],
    [
      "the answer to another request",
      201,
      await signAnswer(otherRequest, { status: 201, body: "created" }, bob),
      {},
      /does not verify/,
    ],
    [
      "a time after the signer's certificate",
      201,
      signed,
      { now: Date.now() + 400 * 86_400_000 },
      /not valid now/,
    ],
  ];
  for (const [what, status, answer, over, message] of cases) {
    await assert.rejects(
      verifyAnswer(status, JSON.stringify(answer), request, { ...actx, ...over }),
      { status: 502, code: "forged_answer", message },
      what,
    );
  }
});
