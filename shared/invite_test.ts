/**
 * The invite string and the enrollment proof: an invite survives being
 * copied with line breaks, and anything cut, altered, oversized or missing a
 * field is refused with `bad_invite`; the proof is HMAC-SHA256 over the
 * invite id, endpoint and CSR under a key derived from the secret. The CA's
 * use of them is tested in `ca/invites_test.ts`.
 */
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import {
  decodeInvite,
  encodeInvite,
  enrollmentProof,
  type InvitePayload,
  inviteProofKey,
  MAX_INVITE_CHARS,
} from "./invite.ts";

const PAYLOAD: InvitePayload = {
  user: "alice",
  id: "0123456789abcdef",
  secret: Uint8Array.from({ length: 32 }, (_, i) => i * 7),
  caFingerprint: "ab".repeat(32),
  hubs: ["hub.example.com:7443", "[::1]:7443"],
  enroll: ["hub.example.com:7445"],
};

/** `ztm-invite-1.` and base64url of `body` as JSON. */
function rawInvite(body: unknown): string {
  return "ztm-invite-1." +
    new TextEncoder().encode(JSON.stringify(body)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
}

const FIELDS = {
  u: "alice",
  i: "0123456789abcdef",
  s: new Uint8Array(32).toBase64({ alphabet: "base64url", omitPadding: true }),
  f: "ab".repeat(32),
  h: ["hub:7443"],
  e: ["hub:7445"],
};

Deno.test("an invite decodes to what was encoded, also with whitespace and line breaks inside", () => {
  const text = encodeInvite(PAYLOAD);
  assert.match(text, /^ztm-invite-1\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeInvite(text), PAYLOAD);
  const wrapped = `  ${text.slice(0, 20)}\n${text.slice(20, 50)}\r\n  ${text.slice(50)}\n`;
  assert.deepEqual(decodeInvite(wrapped), PAYLOAD);
  assert.deepEqual(decodeInvite(rawInvite(FIELDS)).secret, new Uint8Array(32));
});

Deno.test("decodeInvite refuses what is not an invite, or is cut, altered or too long", () => {
  const text = encodeInvite(PAYLOAD);
  const refusals: [string, RegExp][] = [
    ["", /does not start with ztm-invite-1\./],
    ["ztm-invite-2." + text.slice(13), /does not start with/],
    [text.slice(13), /does not start with/],
    [text.slice(0, -10), /is cut or altered|a field is missing/],
    [text.slice(0, 40), /is cut or altered/],
    [text + "!!", /is cut or altered/],
    ["ztm-invite-1.", /is cut or altered/],
    [rawInvite("just a string").replace(/.$/, ""), /is cut or altered/],
    ["ztm-invite-1." + "A".repeat(MAX_INVITE_CHARS), /is too long/],
  ];
  for (const [input, message] of refusals) {
    assert.throws(
      () => decodeInvite(input),
      { name: "BadRequest", status: 400, code: "bad_invite", message },
      input.slice(0, 60),
    );
  }
  // The length limit counts the invite without its whitespace.
  const padded = `${text.slice(0, 20)}${"\n".repeat(MAX_INVITE_CHARS)}${text.slice(20)}`;
  assert.deepEqual(decodeInvite(padded), PAYLOAD);
});

Deno.test("decodeInvite refuses a missing or malformed field, and a secret that is not 32 bytes", () => {
  const hosts = (n: number) => Array.from({ length: n }, (_, i) => `h${i}:1`);
  const bad: [Record<string, unknown> | unknown[] | null, RegExp][] = [
    [null, /a field is missing/],
    [[], /a field is missing/],
    [{ ...FIELDS, u: 1 }, /a field is missing/],
    [{ ...FIELDS, i: "0123456789ABCDEF" }, /a field is missing/],
    [{ ...FIELDS, i: "0123456789abcde" }, /a field is missing/],
    [{ ...FIELDS, f: "ab".repeat(31) }, /a field is missing/],
    [{ ...FIELDS, f: "AB".repeat(32) }, /a field is missing/],
    [{ ...FIELDS, s: undefined }, /a field is missing/],
    [{ ...FIELDS, h: [] }, /a field is missing/],
    [{ ...FIELDS, h: "hub:7443" }, /a field is missing/],
    [{ ...FIELDS, h: hosts(17) }, /a field is missing/],
    [{ ...FIELDS, h: ["hub"] }, /a field is missing/],
    [{ ...FIELDS, h: ["hub:123456"] }, /a field is missing/],
    [{ ...FIELDS, h: ["hub name:1"] }, /a field is missing/],
    [{ ...FIELDS, h: [`${"a".repeat(261)}:1`] }, /a field is missing/],
    [{ ...FIELDS, e: undefined }, /a field is missing/],
    [{ ...FIELDS, e: [7445] }, /a field is missing/],
    [{ ...FIELDS, s: new Uint8Array(31).toBase64({ alphabet: "base64url" }) }, /secret/],
    [{ ...FIELDS, s: new Uint8Array(33).toBase64({ alphabet: "base64url" }) }, /secret/],
    [{ ...FIELDS, s: "not*base64" }, /secret is malformed/],
  ];
  for (const [body, message] of bad) {
    assert.throws(
      () => decodeInvite(rawInvite(body)),
      { code: "bad_invite", message },
      JSON.stringify(body),
    );
  }
  // The limits themselves are accepted: 16 addresses, a 260-character host, a 5-digit port.
  const edge = { ...FIELDS, h: hosts(16), e: [`${"a".repeat(260)}:65535`] };
  assert.equal(decodeInvite(rawInvite(edge)).hubs.length, 16);
});

Deno.test("inviteProofKey is SHA-256 of a label and the secret; enrollmentProof is HMAC-SHA256 of id, endpoint and CSR", async () => {
  const key = await inviteProofKey(PAYLOAD.secret);
  const expectedKey = createHash("sha256").update("ztm-invite-key-v1\n").update(PAYLOAD.secret)
    .digest();
  assert.deepEqual(key, new Uint8Array(expectedKey));
  assert.notDeepEqual(await inviteProofKey(new Uint8Array(32)), key);

  const csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----";
  const proof = await enrollmentProof(key, PAYLOAD.id, "laptop", csr);
  const expected = createHmac("sha256", key)
    .update(`ztm-enroll-v1\n${PAYLOAD.id}\nlaptop\n${csr}`)
    .digest();
  assert.deepEqual(proof, new Uint8Array(expected));
  // Whitespace around the CSR does not change the proof; every field does.
  assert.deepEqual(await enrollmentProof(key, PAYLOAD.id, "laptop", `\n${csr}\n`), proof);
  const others = [
    await enrollmentProof(key, "fedcba9876543210", "laptop", csr),
    await enrollmentProof(key, PAYLOAD.id, "desktop", csr),
    await enrollmentProof(key, PAYLOAD.id, "laptop", csr.replace("MIIB", "MIIC")),
    await enrollmentProof(await inviteProofKey(new Uint8Array(32)), PAYLOAD.id, "laptop", csr),
  ];
  for (const other of others) assert.notDeepEqual(other, proof);
});
