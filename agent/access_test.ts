/**
 * Who may use the agent's local API: the bearer token, or a dashboard session
 * that needs both its cookie (named by the API's port) and its secret; login
 * codes are spent once and expire; the tables of codes and sessions are bounded.
 */
import assert from "node:assert/strict";
import { ApiAccess, type Session, SESSION_COOKIE, SESSION_HEADER } from "./access.ts";

const TOKEN = "a".repeat(64);

function request(port: number, headers: Record<string, string> = {}): Request {
  return new Request(`http://127.0.0.1:${port}/api/meshes`, {
    headers: { host: `127.0.0.1:${port}`, ...headers },
  });
}

/** A request that carries `session` (its cookie, and its secret unless `secret` says otherwise). */
function withSession(port: number, s: Session, secret = s.secret, cookieName?: string): Request {
  const name = cookieName ?? `${SESSION_COOKIE}_${port}`;
  return request(port, { cookie: `other=1; ${name}=${s.cookie}`, [SESSION_HEADER]: secret });
}

Deno.test("the API token as a bearer authorizes; another token or scheme does not", () => {
  const access = new ApiAccess(TOKEN);
  assert.equal(access.authorized(request(7777, { authorization: `Bearer ${TOKEN}` })), true);
  assert.equal(access.authorized(request(7777, { authorization: `bearer ${TOKEN}` })), true);
  assert.equal(
    access.authorized(request(7777, { authorization: `Bearer ${"b".repeat(64)}` })),
    false,
  );
  assert.equal(access.authorized(request(7777, { authorization: `Bearer ${TOKEN}x` })), false);
  assert.equal(access.authorized(request(7777, { authorization: `Basic ${TOKEN}` })), false);
  assert.equal(access.authorized(request(7777)), false);
  assert.equal(access.hasSessionCookie(request(7777, { authorization: `Bearer ${TOKEN}` })), false);
});

Deno.test("a login code gives one session that needs its cookie and its secret", () => {
  const access = new ApiAccess(TOKEN);
  const code = access.newLoginCode();
  assert.match(code, /^[0-9a-f]{64}$/);
  const s = access.redeem(code);
  assert.ok(s);
  assert.match(s.cookie, /^[0-9a-f]{64}$/);
  assert.match(s.secret, /^[0-9a-f]{64}$/);
  assert.notEqual(s.cookie, s.secret);
  assert.equal(access.redeem(code), undefined, "a code is spent once");

  assert.equal(access.authorized(withSession(7777, s)), true);
  assert.equal(access.hasSessionCookie(withSession(7777, s)), true);
  // The cookie alone (any page on 127.0.0.1 gets it) shows the empty page, never data.
  assert.equal(access.authorized(withSession(7777, s, "")), false);
  assert.equal(access.hasSessionCookie(withSession(7777, s, "")), true);
  assert.equal(access.authorized(withSession(7777, s, s.secret.replace(/.$/, "x"))), false);
  // The secret without the cookie, or another session's secret, is nothing either.
  const other = access.redeem(access.newLoginCode())!;
  assert.equal(access.authorized(withSession(7777, s, other.secret)), false);
  assert.equal(
    access.authorized(request(7777, { [SESSION_HEADER]: s.secret })),
    false,
  );
  // A made-up cookie value has no session.
  assert.equal(access.hasSessionCookie(withSession(7777, { ...s, cookie: "f".repeat(64) })), false);
});

Deno.test("a session's cookie is named by the API's port, so another agent's is not it", () => {
  const access = new ApiAccess(TOKEN);
  const s = access.redeem(access.newLoginCode())!;
  const set = ApiAccess.cookie(s, request(7777));
  assert.equal(set, `${SESSION_COOKIE}_7777=${s.cookie}; HttpOnly; SameSite=Strict; Path=/`);
  // The cookie of port 7777 sent to the API on 7778 is another agent's cookie.
  assert.equal(access.authorized(withSession(7778, s, s.secret, `${SESSION_COOKIE}_7777`)), false);
  assert.equal(
    access.hasSessionCookie(withSession(7778, s, s.secret, `${SESSION_COOKIE}_7777`)),
    false,
  );
  assert.equal(access.authorized(withSession(7778, s)), true);
  // No port in Host: the default port's name.
  const bare = new Request("http://localhost/", { headers: { host: "localhost" } });
  assert.match(ApiAccess.cookie(s, bare), new RegExp(`^${SESSION_COOKIE}_80=`));
});

Deno.test("a login code expires after ten minutes", () => {
  const access = new ApiAccess(TOKEN);
  const t0 = 1_000_000;
  const late = access.newLoginCode(t0);
  assert.equal(access.redeem(late, t0 + 10 * 60_000 + 1), undefined);
  const inTime = access.newLoginCode(t0);
  assert.ok(access.redeem(inTime, t0 + 10 * 60_000));
  assert.equal(access.redeem("not a code"), undefined);
});

Deno.test("open login codes and sessions are bounded, the oldest going first", () => {
  const access = new ApiAccess(TOKEN);
  const first = access.newLoginCode();
  const second = access.newLoginCode();
  for (let i = 0; i < 99; i++) access.newLoginCode();
  assert.equal(access.redeem(first), undefined, "the 101st code pushed out the first");
  assert.ok(access.redeem(second));

  const sessions = new ApiAccess(TOKEN);
  const oldest = sessions.redeem(sessions.newLoginCode())!;
  const next = sessions.redeem(sessions.newLoginCode())!;
  for (let i = 0; i < 998; i++) sessions.redeem(sessions.newLoginCode());
  assert.equal(sessions.authorized(withSession(7777, oldest)), true, "1000 sessions fit");
  sessions.redeem(sessions.newLoginCode());
  assert.equal(sessions.authorized(withSession(7777, oldest)), false, "the 1001st ends the oldest");
  assert.equal(sessions.authorized(withSession(7777, next)), true);
});
