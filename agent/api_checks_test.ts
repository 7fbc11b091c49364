import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import {
  canonicalIpv6,
  checkFields,
  checkHost,
  checkListenIp,
  checkPortBody,
  checkPortText,
  checkProto,
  checkServiceBody,
  checkServiceName,
  checkUsers,
  formatAddr,
  listenError,
  MAX_SERVICE_USERS,
} from "./api_checks.ts";
import type { PortMapping } from "./runtime.ts";

/** Asserts `fn` throws a `ZtmError` with `code` and `status` whose message matches `message`. */
function refuses(fn: () => unknown, code: string, message: RegExp, status = 400): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ZtmError, String(err));
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.match(err.message, message);
    return true;
  });
}

Deno.test("unknown fields are refused by name, with the allowed ones listed", () => {
  checkFields({ host: 1, port: 2 }, ["host", "port"], "Service");
  checkFields({}, ["host"], "Service");
  refuses(
    () => checkFields({ host: 1, hots: 2 }, ["host", "port"], "Service"),
    "bad_request",
    /^Service has an unknown field "hots"; allowed: host, port$/,
  );
  // Keys of Object.prototype are fields like any other.
  refuses(
    () => checkFields(JSON.parse('{"__proto__":1}'), ["host"], "Service"),
    "bad_request",
    /__proto__/,
  );
});

Deno.test("protocols and service names follow their rules; a refusal names the value", () => {
  assert.equal(checkProto("tcp"), "tcp");
  assert.equal(checkProto("udp"), "udp");
  refuses(() => checkProto("TCP"), "bad_proto", /^Unknown protocol "TCP"; use tcp or udp$/);
  refuses(() => checkProto(""), "bad_proto", /""/);
  for (const ok of ["ssh", "a", "web_1.local-x", "_x", "A".repeat(64)]) checkServiceName(ok);
  for (const bad of ["", ".hidden", "-x", "a/b", "a b", "A".repeat(65), "ü"]) {
    refuses(() => checkServiceName(bad), "bad_service_name", /^Bad service name ".*": use 1 to 64/);
  }
});

Deno.test("a service body is taken whole or refused, naming the bad part", () => {
  assert.deepEqual(checkServiceBody("tcp", "ssh", { host: "127.0.0.1", port: 22 }), {
    proto: "tcp",
    name: "ssh",
    host: "127.0.0.1",
    port: 22,
    users: [],
    strict: false,
  });
  assert.deepEqual(
    checkServiceBody("udp", "dns", {
      host: "[::1]",
      port: 65535,
      users: ["bob", "alice", "bob"],
      strict: true,
    }),
    { proto: "udp", name: "dns", host: "::1", port: 65535, users: ["bob", "alice"], strict: true },
  );
  for (const port of [0, 65536, 22.5, "22", null, undefined, -1]) {
    refuses(
      () => checkServiceBody("tcp", "ssh", { host: "h", port }),
      "bad_port",
      /use a number 1 to 65535/,
    );
  }
  refuses(
    () => checkServiceBody("tcp", "ssh", { host: "h", port: 22, strict: "yes" }),
    "bad_strict",
    /strict must be true or false/,
  );
  refuses(
    () => checkServiceBody("tcp", "ssh", { host: "h", port: 22, extra: 1 }),
    "bad_request",
    /unknown field "extra"/,
  );
  refuses(() => checkServiceBody("tcp", "ssh", { port: 22 }), "bad_host", /1 to 253/);
});

Deno.test("a target host is an IP literal (IPv6 kept canonical) or a DNS name of at most 253", () => {
  assert.equal(checkHost("10.0.0.255"), "10.0.0.255");
  assert.equal(checkHost("db.internal."), "db.internal.");
  assert.equal(checkHost("my_host-1.example"), "my_host-1.example");
  assert.equal(checkHost("[0:0:0:0:0:0:0:1]"), "::1");
  assert.equal(checkHost("FE80::0001"), "fe80::1");
  assert.equal(checkHost("a.".repeat(126) + "b"), "a.".repeat(126) + "b");
  for (const bad of ["", 7, null, "a".repeat(254)]) {
    refuses(
      () => checkHost(bad),
      "bad_host",
      /^host must be a host name or IP address of 1 to 253/,
    );
  }
  for (
    const bad of ["a..b", "-x.example", "a b", "x/y", "h:22", "a".repeat(64), "[::g]", "::1::2"]
  ) {
    refuses(() => checkHost(bad), "bad_host", /^Bad host ".*": use a host name or IP address$/);
  }
  assert.equal(canonicalIpv6("::FFFF:10.0.0.1"), "::ffff:a00:1");
  assert.equal(canonicalIpv6("10.0.0.1"), undefined);
  assert.equal(canonicalIpv6("1:2:3:4:5:6:7:8:9"), undefined);
});

Deno.test('users are names, or ["*"] alone, at most 1000, each once', () => {
  assert.deepEqual(checkUsers(undefined), []);
  assert.deepEqual(checkUsers([]), []);
  assert.deepEqual(checkUsers(["*", "*"]), ["*"]);
  assert.deepEqual(checkUsers(["bob", "alice", "bob"]), ["bob", "alice"]);
  const many = Array.from({ length: MAX_SERVICE_USERS }, (_, i) => `u${i}`);
  assert.equal(checkUsers(many).length, MAX_SERVICE_USERS);
  refuses(() => checkUsers([...many, "one-more"]), "bad_users", /at most 1000 user names/);
  refuses(() => checkUsers("alice"), "bad_users", /must be a list/);
  refuses(() => checkUsers(["alice", 7]), "bad_users", /must be a list/);
  refuses(
    () => checkUsers(["*", "alice"]),
    "bad_users",
    /either \["\*"\] \(every member\) or a list/,
  );
  refuses(() => checkUsers(["alice", "b c"]), "bad_users", /^Bad user name "b c" in users/);
});

Deno.test("a listen address is an IP literal (IPv6 canonical) or localhost; a port text 1 to 65535", () => {
  assert.equal(checkListenIp("LocalHost"), "localhost");
  assert.equal(checkListenIp("0.0.0.0"), "0.0.0.0");
  assert.equal(checkListenIp("0:0::1"), "::1");
  assert.equal(checkListenIp("[::]"), "::");
  for (const bad of ["", "256.0.0.1", "example.com", "1.2.3", "01.2.3.4x"]) {
    refuses(() => checkListenIp(bad), "bad_ip", /^Bad listen address ".*": use an IPv4 or IPv6/);
  }
  assert.equal(checkPortText("1"), 1);
  assert.equal(checkPortText("65535"), 65535);
  assert.equal(checkPortText("08080"), 8080);
  for (const bad of ["0", "65536", "", "1e3", "-1", " 80", "80 ", "0x50", "123456"]) {
    refuses(() => checkPortText(bad), "bad_port", /^Bad port ".*": use 1 to 65535$/);
  }
});

Deno.test("a port mapping's target names a service, and optionally a user and an endpoint", () => {
  assert.deepEqual(checkPortBody({ target: { service: "tcp/ssh" } }), { service: "ssh" });
  assert.deepEqual(checkPortBody({ target: { service: "TCP/web" } }), { service: "web" });
  const id = "ep-" + "0".repeat(32);
  assert.deepEqual(
    checkPortBody({ target: { service: "ssh", user: "alice", endpoint: id } }),
    { service: "ssh", user: "alice", endpoint: id },
  );
  assert.deepEqual(checkPortBody({ target: { service: "ssh", endpoint: "laptop" } }), {
    service: "ssh",
    endpoint: "laptop",
  });
  for (const target of [undefined, null, "ssh", ["ssh"]]) {
    refuses(() => checkPortBody({ target }), "bad_target", /^target must be an object/);
  }
  refuses(
    () => checkPortBody({ target: {}, x: 1 }),
    "bad_request",
    /Port mapping has an unknown field "x"/,
  );
  refuses(
    () => checkPortBody({ target: { service: "ssh", port: 1 } }),
    "bad_request",
    /^target has/,
  );
  for (const service of [undefined, 7, "udp/dns", "tcp/", "a b"]) {
    refuses(() => checkPortBody({ target: { service } }), "bad_target", /^Bad target service /);
  }
  refuses(
    () => checkPortBody({ target: { service: "ssh", user: "*" } }),
    "bad_target",
    /^Bad target user "\*"/,
  );
  refuses(
    () => checkPortBody({ target: { service: "ssh", endpoint: "ep/../x" } }),
    "bad_target",
    /^Bad target endpoint "ep\/..\/x": use an endpoint id or name$/,
  );
});

const MAPPING: PortMapping = {
  ip: "127.0.0.1",
  proto: "tcp",
  port: 0,
  target: { service: "ssh" },
};

Deno.test("real listen failures become API errors naming the address", () => {
  using held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = held.addr.port;
  let inUse: unknown;
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  } catch (err) {
    inUse = err;
  }
  const m = { ...MAPPING, port };
  const mapped = listenError(inUse, m);
  assert.ok(mapped instanceof ZtmError);
  assert.equal(mapped.code, "port_in_use");
  assert.equal(mapped.status, 409);
  assert.equal(mapped.message, `Port 127.0.0.1/tcp/${port} is already in use`);
  assert.equal(mapped.cause, inUse);

  // 192.0.2.1 (TEST-NET-1) is no address of this computer.
  let foreign: unknown;
  try {
    Deno.listen({ hostname: "192.0.2.1", port: 0 }).close();
  } catch (err) {
    foreign = err;
  }
  const notHere = listenError(foreign, { ...MAPPING, ip: "192.0.2.1" });
  assert.ok(notHere instanceof ZtmError);
  assert.equal(notHere.code, "address_unavailable");
  assert.equal(notHere.message, "Address 192.0.2.1 is not an address of this computer");

  const denied = listenError(new Deno.errors.PermissionDenied("no"), { ...MAPPING, port: 80 });
  assert.ok(denied instanceof ZtmError);
  assert.equal(denied.code, "port_not_permitted");
  assert.equal(denied.status, 403);
  assert.equal(denied.message, "Not permitted to listen on 127.0.0.1/tcp/80");

  // An API error passes as it is; anything else is not dressed up.
  const own = new ZtmError(400, "bad_ip", "x");
  assert.equal(listenError(own, m), own);
  const other = new Error("boom");
  assert.equal(listenError(other, m), other);
});

Deno.test("an address is written host:port, IPv6 in brackets", () => {
  assert.equal(formatAddr("127.0.0.1", 80), "127.0.0.1:80");
  assert.equal(formatAddr("::1", 80), "[::1]:80");
  assert.equal(formatAddr("localhost", 8080), "localhost:8080");
});
