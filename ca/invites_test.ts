/**
 * `InviteService` and `inviteRoutes` over a real SQLite store in a temp dir,
 * the routes through a real socket: an invite enrolls as many devices as it
 * has uses and no more; an unknown id and a wrong proof are the same 403;
 * only a caller with the secret learns that an invite is used, revoked or
 * expired; the CA keeps no secret. Hub-carried enrollment end to end is in
 * `tests/ca/invite_test.ts` and `tests/security/invite_attack_test.ts`.
 */
import assert from "node:assert/strict";
import { fingerprintOf, generateKeyPair, x509 } from "@ztm/shared/certs";
import { type App, createRouter, serveHttp } from "@ztm/shared/http";
import { decodeInvite, enrollmentProof, inviteProofKey } from "@ztm/shared/invite";
import { Logger } from "@ztm/shared/log";
import { openCaWithInvites as openCa } from "./_fixture.ts";
import { caError } from "./errors.ts";
import type { Issuer } from "./issue.ts";
import {
  Bucket,
  defaultEnrollAddress,
  inviteRoutes,
  type InviteService,
  MAX_INVITE_MS,
  MAX_INVITE_USES,
  parseDuration,
} from "./invites.ts";

/** A PEM CSR with common name `cn` and a new key. */
async function csrFor(cn: string): Promise<string> {
  return (await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys: await generateKeyPair(),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  })).toString("pem");
}

/** The enrollment body a device holding `invite` sends for `endpoint`. */
async function enrollment(invite: string, endpoint: string, csr?: string) {
  const p = decodeInvite(invite);
  csr ??= await csrFor(p.user);
  const proof = await enrollmentProof(await inviteProofKey(p.secret), p.id, endpoint, csr);
  return {
    invite: p.id,
    endpoint,
    csr,
    proof: proof.toBase64({ alphabet: "base64url", omitPadding: true }),
  };
}

/** A hub certificate of this CA, as `signHubCsr` makes it. */
async function hubCertificate(issuer: Issuer, name = "hub1") {
  return await issuer.signHubCsr(await csrFor(name));
}

const HUBS = ["hub.example.com:7443"];

Deno.test("create makes an invite that carries the hubs and CA fingerprint; the CA keeps only the proof key", async () => {
  await using ca = await openCa();
  const { invite, record } = await ca.invites.create({ user: "alice", hubs: HUBS, uses: 2 });
  const p = decodeInvite(invite);
  assert.equal(p.user, "alice");
  assert.equal(p.id, record.id);
  assert.deepEqual(p.hubs, HUBS);
  assert.deepEqual(p.enroll, ["hub.example.com:7445"], "control port + 2 when none is named");
  assert.equal(p.caFingerprint, await fingerprintOf(ca.signingKey.certificate));
  assert.equal(record.state, "active");
  assert.equal(record.usesLeft, 2);
  assert.equal(record.uses, 0);
  assert.deepEqual(record.hubs, { control: HUBS, enroll: ["hub.example.com:7445"] });
  assert.ok(
    Date.parse(record.expiresAt) - Date.parse(record.createdAt) === 3_600_000,
    "1 h by default",
  );
  // The row holds the derived key, never the secret; nothing listed or logged carries either.
  const row = ca.store.database.prepare("SELECT * FROM invites WHERE id = ?").get(p.id) as Record<
    string,
    unknown
  >;
  assert.deepEqual(new Uint8Array(row.proof_key as Uint8Array), await inviteProofKey(p.secret));
  const secret = p.secret.toBase64({ alphabet: "base64url", omitPadding: true });
  assert.ok(!JSON.stringify(ca.invites.list()).includes(secret));
  assert.ok(!ca.lines.join("\n").includes(secret));
  assert.ok(!ca.lines.join("\n").includes(invite.slice(13)));
  // Named enrollment addresses are kept, duplicates dropped.
  const named = await ca.invites.create({
    user: "bob",
    hubs: [...HUBS, ...HUBS],
    enroll: ["e:1", "e:1"],
  });
  assert.deepEqual(decodeInvite(named.invite).hubs, HUBS);
  assert.deepEqual(decodeInvite(named.invite).enroll, ["e:1"]);
  assert.deepEqual(ca.invites.list().map((r) => r.user).sort(), ["alice", "bob"]);
});

Deno.test("create refuses a bad user, lifetime, use count or hub list, and a mesh no hub announced", async () => {
  await using ca = await openCa();
  const cases: [Parameters<InviteService["create"]>[0], string][] = [
    [{ user: "a b", hubs: HUBS }, "bad_name"],
    [{ user: "ca", hubs: HUBS }, "bad_name"],
    [{ user: "alice", hubs: HUBS, expiresInMs: 999 }, "bad_expiry"],
    [{ user: "alice", hubs: HUBS, expiresInMs: MAX_INVITE_MS + 1 }, "bad_expiry"],
    [{ user: "alice", hubs: HUBS, expiresInMs: 1.5e6 + 0.5 }, "bad_expiry"],
    [{ user: "alice", hubs: HUBS, uses: 0 }, "bad_uses"],
    [{ user: "alice", hubs: HUBS, uses: MAX_INVITE_USES + 1 }, "bad_uses"],
    [{ user: "alice", hubs: HUBS, uses: 1.5 }, "bad_uses"],
    [{ user: "alice", hubs: ["no-port"] }, "bad_hubs"],
    [{ user: "alice", hubs: Array.from({ length: 17 }, (_, i) => `h${i}:1`) }, "bad_hubs"],
    [{ user: "alice", hubs: HUBS, enroll: ["a b:1"] }, "bad_hubs"],
    [{ user: "alice" }, "no_hubs"],
  ];
  for (const [input, code] of cases) {
    await assert.rejects(ca.invites.create(input), { code }, JSON.stringify(input));
  }
  assert.deepEqual(ca.invites.list(), []);
  // The limits themselves are accepted.
  await ca.invites.create({
    user: "alice",
    hubs: HUBS,
    expiresInMs: MAX_INVITE_MS,
    uses: MAX_INVITE_USES,
  });
  await ca.invites.create({ user: "alice", hubs: HUBS, expiresInMs: 1000, uses: 1 });
});

Deno.test("announced hubs with a live hub certificate go into new invites; a renewed hub replaces its row", async () => {
  await using ca = await openCa();
  const first = await hubCertificate(ca.issuer);
  ca.invites.announceHub(first.serial, ["10.0.0.1:7443"], ["10.0.0.1:7445"]);
  // A serial the CA never issued to a hub is not listed.
  ca.invites.announceHub("abcdef", ["10.0.0.9:7443"], []);
  assert.deepEqual(ca.invites.hubs().map((h) => [h.serial, h.control, h.enroll]), [
    [first.serial, ["10.0.0.1:7443"], ["10.0.0.1:7445"]],
  ]);
  assert.equal(ca.invites.hubs()[0].certificate, first.certificate);
  const made = decodeInvite((await ca.invites.create({ user: "alice" })).invite);
  assert.deepEqual([made.hubs, made.enroll], [["10.0.0.1:7443"], ["10.0.0.1:7445"]]);
  // The hub renewed its certificate and announces the same address: one row, the new serial.
  const renewed = await hubCertificate(ca.issuer);
  ca.invites.announceHub(renewed.serial, ["10.0.0.1:7443"], ["10.0.0.1:7445"]);
  assert.deepEqual(ca.invites.hubs().map((h) => h.serial), [renewed.serial]);
  // A revoked hub is not offered.
  ca.revoker.revokeHub(renewed.serial);
  assert.deepEqual(ca.invites.hubs(), []);
  await assert.rejects(ca.invites.create({ user: "alice" }), { status: 409, code: "no_hubs" });
});

Deno.test("enroll signs the CSR as the invite's user for the endpoint, once per use", async () => {
  await using ca = await openCa();
  const { invite, record } = await ca.invites.create({ user: "alice", hubs: HUBS, uses: 2 });
  const cert = await ca.invites.enroll(await enrollment(invite, "laptop"));
  assert.equal(cert.name, "alice");
  assert.equal(cert.endpoint, "laptop");
  assert.equal(ca.invites.get(record.id)!.usesLeft, 1);
  await ca.invites.enroll(await enrollment(invite, "desktop"));
  const used = ca.invites.get(record.id)!;
  assert.deepEqual([used.usesLeft, used.uses, used.state], [0, 2, "used"]);
  await assert.rejects(ca.invites.enroll(await enrollment(invite, "phone")), {
    status: 409,
    code: "invite_used",
  });
  assert.equal(ca.store.list().filter((r) => r.name === "alice").length, 2);
});

Deno.test("enroll gives the use back when signing fails", async () => {
  await using ca = await openCa();
  const { invite, record } = await ca.invites.create({ user: "alice", hubs: HUBS, uses: 2 });
  await ca.invites.enroll(await enrollment(invite, "laptop"));
  // The endpoint name is taken now; then a CSR for another user.
  await assert.rejects(ca.invites.enroll(await enrollment(invite, "laptop")), {
    code: "name_taken",
  });
  await assert.rejects(
    ca.invites.enroll(await enrollment(invite, "phone", await csrFor("mallory"))),
    { code: "csr_name_mismatch" },
  );
  assert.deepEqual([ca.invites.get(record.id)!.usesLeft, ca.invites.get(record.id)!.uses], [1, 1]);
  await ca.invites.enroll(await enrollment(invite, "phone"));
});

Deno.test("enroll answers an unknown invite and a wrong proof alike, and tells only a holder of the secret why it fails", async () => {
  await using ca = await openCa();
  const { invite, record } = await ca.invites.create({ user: "alice", hubs: HUBS });
  const good = await enrollment(invite, "laptop");
  const messages = new Set<string>();
  for (
    const body of [
      { ...good, invite: "0123456789abcdef" },
      { ...good, invite: "not-hex" },
      { ...good, proof: good.proof.replace(/^./, (c) => (c === "A" ? "B" : "A")) },
      { ...good, proof: "" },
      { ...good, proof: "!!" },
      { ...good, endpoint: "desktop" }, // the proof binds the endpoint
      { ...good, csr: await csrFor("alice") }, // and the CSR
    ]
  ) {
    const err = await ca.invites.enroll(body).then(() => undefined, (e) => e);
    assert.equal(err?.status, 403, JSON.stringify(body).slice(0, 80));
    assert.equal(err.code, "invite_refused");
    messages.add(err.message);
  }
  assert.equal(messages.size, 1, "one message for every refusal");
  assert.equal(ca.invites.get(record.id)!.usesLeft, 1, "no refusal took a use");
  // Revoked: only a valid proof learns it.
  ca.invites.revoke(record.id);
  await assert.rejects(ca.invites.enroll(good), { status: 409, code: "invite_revoked" });
  await assert.rejects(ca.invites.enroll({ ...good, endpoint: "x" }), { code: "invite_refused" });
  // Expired (the clock moved past it).
  const late = await ca.invites.create({ user: "bob", hubs: HUBS });
  ca.store.database.prepare("UPDATE invites SET expires_at = ? WHERE id = ?")
    .run(new Date(Date.now() - 1000).toISOString(), late.record.id);
  assert.equal(ca.invites.get(late.record.id)!.state, "expired");
  await assert.rejects(ca.invites.enroll(await enrollment(late.invite, "laptop")), {
    status: 409,
    code: "invite_expired",
  });
});

Deno.test("enroll refuses malformed bodies before any work, and counts failed proofs in one bucket", async () => {
  await using ca = await openCa({ failuresPerSecond: 1 });
  const { invite } = await ca.invites.create({ user: "alice", hubs: HUBS });
  const good = await enrollment(invite, "laptop");
  for (
    const body of [
      {},
      { ...good, proof: 1 },
      { ...good, invite: "a".repeat(65) },
      { ...good, csr: "x".repeat(8193) },
      { ...good, proof: "x".repeat(101) },
    ]
  ) {
    await assert.rejects(ca.invites.enroll(body), { status: 400, code: "bad_enrollment" });
  }
  await assert.rejects(ca.invites.enroll({ ...good, endpoint: "ep-" + "0".repeat(32) }), {
    code: "bad_endpoint",
  });
  // A burst of 5 refusals (1 a second), then 429 without saying whether the proof matched.
  for (let i = 0; i < 5; i++) {
    await assert.rejects(ca.invites.enroll({ ...good, proof: "AA" }), { code: "invite_refused" });
  }
  await assert.rejects(ca.invites.enroll({ ...good, proof: "AA" }), {
    status: 429,
    code: "too_many_attempts",
  });
  // A valid proof does not draw on the bucket.
  assert.equal((await ca.invites.enroll(good)).endpoint, "laptop");
});

Deno.test("revoke ends an invite's uses once; an unknown or revoked id is 404", async () => {
  await using ca = await openCa();
  const { record } = await ca.invites.create({ user: "alice", hubs: HUBS });
  const revoked = ca.invites.revoke(record.id);
  assert.equal(revoked.state, "revoked");
  assert.ok(revoked.revokedAt);
  assert.throws(() => ca.invites.revoke(record.id), { status: 404, code: "unknown_invite" });
  assert.throws(() => ca.invites.revoke("0000000000000000"), { code: "unknown_invite" });
  assert.equal(ca.invites.get("0000000000000000"), undefined);
});

Deno.test("parseDuration, defaultEnrollAddress and Bucket", () => {
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("15m"), 900_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("7d"), 7 * 86_400_000);
  assert.equal(parseDuration("9999999s"), 9_999_999_000);
  for (const bad of ["", "1", "h", "1w", "1.5h", "-1h", " 1h", "1h ", "10000000s", "1H"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
  assert.equal(defaultEnrollAddress("hub:7443"), "hub:7445");
  assert.equal(defaultEnrollAddress("[::1]:7443"), "[::1]:7445");
  const bucket = new Bucket(0.001, 3);
  assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [
    true,
    true,
    true,
    false,
  ]);
});

/** `inviteRoutes` served on a loopback port; `token` guards hub announcements. */
function serveRoutes(invites: InviteService, token = "secret-token") {
  const app: App = createRouter(inviteRoutes(invites, (req) => {
    if (req.headers.get("authorization") !== `Bearer ${token}`) {
      throw caError("token_required", "No token");
    }
  }));
  const server = serveHttp({
    listen: { hostname: "127.0.0.1", port: 0 },
    app,
    log: new Logger("ca", { sink: () => {} }),
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return {
    async call(method: string, path: string, body?: unknown, headers: HeadersInit = {}) {
      const res = await fetch(base + path, {
        method,
        headers,
        body: body === undefined
          ? undefined
          : typeof body === "string"
          ? body
          : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : undefined };
    },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

Deno.test("inviteRoutes over HTTP: create, list, enroll and revoke, with each bad request's status and code", async () => {
  await using ca = await openCa();
  await using api = serveRoutes(ca.invites);
  const made = await api.call("POST", "/api/invites", {
    user: "alice",
    hubs: HUBS,
    expires: "15m",
    uses: 2,
  });
  assert.equal(made.status, 201);
  assert.equal(made.json.user, "alice");
  assert.equal(Date.parse(made.json.expiresAt) - Date.parse(made.json.createdAt), 900_000);
  const refusals: [unknown, number, string][] = [
    ["[1]", 400, "bad_json"],
    ["not json", 400, "bad_json"],
    [{}, 400, "bad_user"],
    [{ user: "alice", hubs: HUBS, expires: 3600 }, 400, "bad_expiry"],
    [{ user: "alice", hubs: HUBS, expires: "1w" }, 400, "bad_expiry"],
    [{ user: "alice", hubs: HUBS, uses: "2" }, 400, "bad_uses"],
    [{ user: "alice", hubs: "hub:1" }, 400, "bad_hubs"],
    [{ user: "alice", hubs: HUBS, enroll: [1] }, 400, "bad_hubs"],
    ["x".repeat(16 * 1024 + 1), 413, "body_too_large"],
  ];
  for (const [body, status, code] of refusals) {
    const r = await api.call("POST", "/api/invites", body);
    assert.deepEqual(
      [r.status, r.json?.error?.code],
      [status, code],
      JSON.stringify(body).slice(0, 60),
    );
  }
  const list = await api.call("GET", "/api/invites");
  assert.deepEqual(list.json.map((r: { id: string }) => r.id), [made.json.id]);
  assert.ok(!JSON.stringify(list.json).includes(made.json.invite.slice(13)));

  const enrolled = await api.call(
    "POST",
    "/api/enrollments",
    await enrollment(made.json.invite, "laptop"),
  );
  assert.equal(enrolled.status, 201);
  assert.match(enrolled.json.certificate, /BEGIN CERTIFICATE/);
  assert.equal(enrolled.json.ca, ca.invites.caCertificatePem);
  assert.equal(enrolled.json.endpoint, "laptop");
  const refused = await api.call("POST", "/api/enrollments", {
    ...await enrollment(made.json.invite, "x"),
    proof: "AA",
  });
  assert.deepEqual([refused.status, refused.json.error.code], [403, "invite_refused"]);

  const revoked = await api.call("DELETE", `/api/invites/${made.json.id}`);
  assert.equal(revoked.json.revoked.state, "revoked");
  const again = await api.call("DELETE", `/api/invites/${made.json.id}`);
  assert.deepEqual([again.status, again.json.error.code], [404, "unknown_invite"]);
});

Deno.test("inviteRoutes: a hub announcement needs the token and a hex serial", async () => {
  await using ca = await openCa();
  await using api = serveRoutes(ca.invites);
  const hub = await hubCertificate(ca.issuer);
  const body = { control: ["10.0.0.1:7443"], enroll: ["10.0.0.1:7445"] };
  const auth = { authorization: "Bearer secret-token" };
  const none = await api.call("PUT", `/api/hubs/${hub.serial}`, body);
  assert.equal(none.status, 401);
  const wrong = await api.call("PUT", `/api/hubs/${hub.serial}`, body, {
    authorization: "Bearer other",
  });
  assert.equal(wrong.status, 401);
  assert.deepEqual((await api.call("GET", "/api/hubs")).json, []);
  for (const serial of ["XYZ", "ABCDEF", "a".repeat(65)]) {
    const r = await api.call("PUT", `/api/hubs/${serial}`, body, auth);
    assert.deepEqual([r.status, r.json.error.code], [400, "bad_serial"], serial);
  }
  const badBody = await api.call(
    "PUT",
    `/api/hubs/${hub.serial}`,
    { control: "10.0.0.1:7443" },
    auth,
  );
  assert.deepEqual([badBody.status, badBody.json.error.code], [400, "bad_hubs"]);
  const ok = await api.call("PUT", `/api/hubs/${hub.serial}`, { control: body.control }, auth);
  assert.deepEqual(ok.json, { ok: true });
  const hubs = (await api.call("GET", "/api/hubs")).json;
  assert.deepEqual(hubs.map((h: { serial: string; enroll: string[] }) => [h.serial, h.enroll]), [[
    hub.serial,
    [],
  ]]);
});
