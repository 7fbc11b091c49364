import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import {
  checkInviteRequest,
  type InviteMaker,
  makesInvitesFor,
  noInvitesHere,
} from "./invite_maker.ts";
import { newCa } from "../tests/fixtures/test_pki.ts";

/** Asserts `fn` throws a 400 `ZtmError` with `code` whose message matches `message`. */
function refuses(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ZtmError, String(err));
    assert.equal(err.code, code);
    assert.equal(err.status, 400);
    assert.match(err.message, message);
    return true;
  });
}

Deno.test("an invite request names a user, and may give an expiry and a number of uses", () => {
  assert.deepEqual(checkInviteRequest({ user: "alice" }), {
    user: "alice",
    expires: undefined,
    uses: undefined,
  });
  assert.deepEqual(checkInviteRequest({ user: "bob.k", expires: "15m", uses: 100 }), {
    user: "bob.k",
    expires: "15m",
    uses: 100,
  });
  for (const expires of ["30s", "1h", "7d", "9999999d"]) {
    assert.equal(checkInviteRequest({ user: "a", expires }).expires, expires);
  }
});

Deno.test("a bad invite request is refused naming the field", () => {
  refuses(
    () => checkInviteRequest({ user: "a", role: "admin" }),
    "bad_request",
    /^Unknown field "role": user, expires, uses$/,
  );
  // A long field name is cut in the message.
  refuses(
    () => checkInviteRequest({ user: "a", ["x".repeat(100)]: 1 }),
    "bad_request",
    new RegExp(`^Unknown field "${"x".repeat(40)}": `),
  );
  for (const user of [undefined, "", "-a", "a b", 7, "x".repeat(65)]) {
    refuses(() => checkInviteRequest({ user }), "bad_user", /^user is 1 to 64 of/);
  }
  for (const expires of ["15", "1w", "1.5h", "10000000d", 60, ""]) {
    refuses(() => checkInviteRequest({ user: "a", expires }), "bad_expiry", /"15m", "1h", "7d"/);
  }
  for (const uses of [0, 101, 1.5, "3", null]) {
    refuses(() => checkInviteRequest({ user: "a", uses }), "bad_uses", /from 1 to 100/);
  }
});

Deno.test("invites are made only for the mesh whose CA certificate is the maker's, byte for byte", async () => {
  const ca = await newCa();
  const other = await newCa();
  const maker: InviteMaker = {
    caCertificatePem: ca.pem,
    create: () => Promise.reject(new Error("not called")),
  };
  assert.equal(makesInvitesFor(maker, ca.pem), true);
  assert.equal(makesInvitesFor(maker, ca.pem.replace(/\n/g, "\r\n")), true);
  assert.equal(makesInvitesFor(maker, other.pem), false);
  // The same certificate with one byte of its signature changed is another CA's.
  const der = ca.certificate.rawData.slice(0);
  new Uint8Array(der)[der.byteLength - 1] ^= 1;
  const altered = `-----BEGIN CERTIFICATE-----\n${
    new Uint8Array(der).toBase64()
  }\n-----END CERTIFICATE-----\n`;
  assert.equal(makesInvitesFor(maker, altered), false);
  assert.equal(makesInvitesFor(undefined, ca.pem), false);
  assert.equal(makesInvitesFor(maker, "garbage"), false);
  assert.equal(makesInvitesFor({ ...maker, caCertificatePem: "" }, ca.pem), false);

  const err = noInvitesHere("home");
  assert.equal(err.code, "invites_unavailable");
  assert.equal(err.status, 404);
  assert.match(err.message, /mesh "home": make invites with ztm invite on the CA's machine/);
});
