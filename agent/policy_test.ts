/**
 * An endpoint's remote-management policy: a `PUT …/policy` body is checked
 * field by field and keeps what it leaves out; target and listen patterns
 * match with `*` standing for part of one label, never across `.` or `:`.
 */
import assert from "node:assert/strict";
import type { ZtmError } from "@ztm/shared/errors";
import {
  allowedTarget,
  allowsListen,
  checkPolicyBody,
  DEFAULT_POLICY,
  type Policy,
} from "./policy.ts";

const policy = (targets: string[], listen: string[] = []): Policy => ({
  remoteManagement: true,
  targets,
  listen,
});

Deno.test("a policy body keeps the fields it leaves out, and lists lose their repeats", () => {
  assert.deepEqual(checkPolicyBody({}, DEFAULT_POLICY), DEFAULT_POLICY);
  const off = checkPolicyBody({ remoteManagement: false }, DEFAULT_POLICY);
  assert.deepEqual(off, { ...DEFAULT_POLICY, remoteManagement: false });
  const narrowed = checkPolicyBody({ targets: ["10.0.0.*:22", "10.0.0.*:22", "[::1]:80"] }, off);
  assert.deepEqual(narrowed, {
    remoteManagement: false,
    targets: ["10.0.0.*:22", "[::1]:80"],
    listen: DEFAULT_POLICY.listen,
  });
  assert.deepEqual(checkPolicyBody({ listen: [] }, narrowed).listen, []);
});

Deno.test("bad policy bodies are refused with 400 naming the field", () => {
  const refused = (body: Record<string, unknown>, code: string, message: RegExp) =>
    assert.throws(() => checkPolicyBody(body, DEFAULT_POLICY), (e: ZtmError) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, code);
      assert.match(e.message, message);
      return true;
    });
  refused({ owner: "x" }, "bad_request", /unknown field "owner"/);
  refused({ remoteManagement: "yes" }, "bad_policy", /remoteManagement must be true or false/);
  refused({ targets: "*" }, "bad_policy", /^targets must be a list/);
  refused({ listen: [7] }, "bad_policy", /^listen must be a list/);
  refused({ targets: ["host name"] }, "bad_policy", /^targets/);
  refused({ targets: ["a/b"] }, "bad_policy", /^targets/);
  refused({ targets: [""] }, "bad_policy", /^targets/);
  refused({ targets: ["x".repeat(261)] }, "bad_policy", /^targets/);
  refused({ targets: Array.from({ length: 101 }, (_, i) => `h${i}`) }, "bad_policy", /100/);
  // The bounds themselves pass.
  checkPolicyBody({ targets: Array.from({ length: 100 }, (_, i) => `h${i}`) }, DEFAULT_POLICY);
  checkPolicyBody({ targets: ["x".repeat(260)] }, DEFAULT_POLICY);
});

Deno.test("a target pattern's * stands for part of one label, host and port apart", () => {
  const p = policy(["10.0.0.*:22", "*.lan:80*", "db:5432", "[fe80::*]:443", "web"]);
  assert.equal(allowedTarget(p, "10.0.0.7", 22), "10.0.0.*:22");
  assert.equal(allowedTarget(p, "10.0.0.7", 23), undefined);
  assert.equal(allowedTarget(p, "10.0.1.7", 22), undefined, "* does not cross a dot");
  assert.equal(allowedTarget(p, "10.0.0.7.evil.com", 22), undefined, "the whole host must match");
  assert.equal(allowedTarget(p, "printer.lan", 8080), "*.lan:80*");
  assert.equal(allowedTarget(p, "a.printer.lan", 80), undefined);
  assert.equal(allowedTarget(p, "DB", 5432), "db:5432", "names match case-insensitively");
  assert.equal(allowedTarget(p, "db", 54321), undefined);
  assert.equal(allowedTarget(p, "fe80::1", 443), "[fe80::*]:443");
  assert.equal(allowedTarget(p, "fe80::1:2", 443), undefined, "* does not cross a colon");
  assert.equal(allowedTarget(p, "web", 1), "web", "no port: any port");
  // Regex characters in a pattern are literal.
  assert.equal(allowedTarget(policy(["a.c:1"]), "abc", 1), undefined);
  assert.equal(allowedTarget(policy(["*"]), "anything.at.all", 65535), "*");
  assert.equal(allowedTarget(policy([]), "localhost", 22), undefined);
});

Deno.test("listen patterns allow the addresses they match and nothing else", () => {
  assert.equal(allowsListen(DEFAULT_POLICY, "127.0.0.1"), true);
  assert.equal(allowsListen(DEFAULT_POLICY, "::1"), true);
  assert.equal(allowsListen(DEFAULT_POLICY, "0.0.0.0"), false);
  assert.equal(allowsListen(DEFAULT_POLICY, "192.168.1.5"), false);
  const lan = policy([], ["192.168.1.*"]);
  assert.equal(allowsListen(lan, "192.168.1.5"), true);
  assert.equal(allowsListen(lan, "192.168.10.5"), false);
  assert.equal(allowsListen(lan, "192.168.1.5.6"), false);
  assert.equal(allowsListen(policy([], ["*"]), "0.0.0.0"), true);
  assert.equal(allowsListen(policy([], []), "127.0.0.1"), false);
});
