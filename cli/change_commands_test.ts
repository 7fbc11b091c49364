/** Reading `PROTO/NAME` and `[IP:]PORT` from the command line. */
import assert from "node:assert/strict";
import { UsageError } from "@ztm/shared/flags";
import { parseListen, parseServiceName } from "./change_commands.ts";

Deno.test("parseServiceName reads PROTO/NAME, and a bare NAME as tcp", () => {
  assert.deepEqual(parseServiceName("tcp/ssh", "x"), { proto: "tcp", name: "ssh" });
  assert.deepEqual(parseServiceName("web", "x"), { proto: "tcp", name: "web" });
  assert.deepEqual(parseServiceName("udp/dns", "x"), { proto: "udp", name: "dns" });
  assert.throws(() => parseServiceName("sctp/dns", "--service"), (err: Error) => {
    assert.ok(err instanceof UsageError);
    assert.equal(
      err.message,
      '--service: unknown protocol "sctp" in "sctp/dns"; use tcp/NAME or udp/NAME',
    );
    return true;
  });
  assert.throws(() => parseServiceName("tcp/", "x"), /names no service/);
});

Deno.test("parseListen reads PORT, IP:PORT and [IPv6]:PORT; a bare port listens on 127.0.0.1", () => {
  assert.deepEqual(parseListen("2222", "tcp"), { ip: "127.0.0.1", proto: "tcp", port: 2222 });
  assert.deepEqual(parseListen("0.0.0.0:80", "tcp"), { ip: "0.0.0.0", proto: "tcp", port: 80 });
  assert.deepEqual(parseListen("[::1]:8080", "tcp"), { ip: "::1", proto: "tcp", port: 8080 });
  assert.deepEqual(parseListen("localhost:1", "tcp"), { ip: "localhost", proto: "tcp", port: 1 });
  assert.throws(() => parseListen("host:", "tcp"), UsageError);
  assert.throws(() => parseListen("::1:80", "tcp"), /IPv6 as \[addr\]:port/);
});
