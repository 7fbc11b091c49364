import assert from "node:assert/strict";
import { Conflict, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { exchangeRaw, startHttp, startTestProxy } from "./_fixture.ts";
import { REPLY, socksReplyOf } from "./socks5.ts";

const enc = new TextEncoder();
const GREETING = [5, 1, 0];

/** A CONNECT request for a domain name. */
function connectName(name: string, cmd = 1, port = 80): number[] {
  const b = enc.encode(name);
  return [5, cmd, 0, 3, b.byteLength, ...b, port >> 8, port & 0xff];
}

/** The method answer and the reply code the proxy sent, after `bytes`. */
async function ask(port: number, bytes: number[]): Promise<number[]> {
  return [...(await exchangeRaw(port, new Uint8Array(bytes)))];
}

Deno.test("SOCKS5 CONNECT by name reaches the service, with the bytes sent behind the request", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port });
  const request = enc.encode("GET /x HTTP/1.0\r\n\r\n");
  // Greeting, request and the first application bytes in one write.
  const got = await exchangeRaw(
    p.proxy.port,
    new Uint8Array([...GREETING, ...connectName("web.mesh"), ...request]),
    { halfClose: false },
  );
  assert.deepEqual([...got.subarray(0, 2)], [5, 0], "method: no authentication");
  assert.deepEqual([...got.subarray(2, 4)], [5, REPLY.succeeded]);
  assert.match(new TextDecoder().decode(got.subarray(12)), /hello from web \/x/);
});

Deno.test("SOCKS5 refusals carry their reply codes and one log line each", async () => {
  const errors: Record<string, ZtmError> = {
    both: new Conflict("ambiguous_service", "Several users offer tcp/both: bob, carol; name one"),
    off: new ServiceUnavailable("no_provider_online", "No provider of tcp/off is online"),
    down: new ZtmError(502, "target_unreachable", "target is unreachable"),
  };
  await using p = startTestProxy({}, { errors });
  const cases: [string, number][] = [
    ["nope.mesh", REPLY.hostUnreachable],
    ["denied.mesh", REPLY.notAllowed],
    ["both.mesh", REPLY.hostUnreachable],
    ["off.mesh", REPLY.networkUnreachable],
    ["down.mesh", REPLY.connectionRefused],
  ];
  for (const [name, code] of cases) {
    const got = await ask(p.proxy.port, [...GREETING, ...connectName(name)]);
    assert.deepEqual(got.slice(0, 4), [5, 0, 5, code], name);
    assert.equal(got.length, 12, `${name}: a whole reply, then the close`);
  }
  const refused = p.lines.filter((l) => l.msg === "proxy refused");
  assert.deepEqual(refused.map((l) => l.service), cases.map(([n]) => n));
  assert.match(String(refused[2].err), /bob, carol/);
  assert.ok(refused.every((l) => l.method === "SOCKS5"));
});

Deno.test("malformed SOCKS5 input gets a clean refusal and the proxy keeps serving", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port });
  // Only username/password offered: no acceptable method.
  assert.deepEqual(await ask(p.proxy.port, [5, 1, 2]), [5, 0xff]);
  // BIND and UDP ASSOCIATE: command not supported.
  assert.deepEqual(
    (await ask(p.proxy.port, [...GREETING, ...connectName("web.mesh", 2)])).slice(2, 4),
    [5, 7],
  );
  assert.deepEqual(
    (await ask(p.proxy.port, [...GREETING, ...connectName("web.mesh", 3)])).slice(2, 4),
    [5, 7],
  );
  // Unknown address type.
  assert.deepEqual((await ask(p.proxy.port, [...GREETING, 5, 1, 0, 9, 1, 2])).slice(2, 4), [5, 8]);
  // An empty name.
  assert.deepEqual((await ask(p.proxy.port, [...GREETING, 5, 1, 0, 3, 0, 0, 80])).slice(2, 4), [
    5,
    4,
  ]);
  // Truncated at every point: closed, nothing dialled.
  const whole = [...GREETING, ...connectName("web.mesh")];
  for (let n = 1; n < whole.length; n++) {
    const got = await ask(p.proxy.port, whole.slice(0, n));
    assert.ok(got.length <= 2, `cut at ${n}: ${got}`);
  }
  // Random bytes after the version byte (seeded): never a crash, never a dial of garbage.
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256;
  for (let i = 0; i < 200; i++) {
    const bytes = [5, ...Array.from({ length: 1 + (rand() % 40) }, rand)];
    await ask(p.proxy.port, bytes);
  }
  assert.equal(p.proxy.connections, 0);
  // Still serving.
  const ok = await exchangeRaw(
    p.proxy.port,
    new Uint8Array([...whole, ...enc.encode("GET / HTTP/1.0\r\n\r\n")]),
    { halfClose: false },
  );
  assert.deepEqual([...ok.subarray(2, 4)], [5, 0]);
});

Deno.test("SOCKS5 addresses (not names) are refused as unknown hosts", async () => {
  await using p = startTestProxy({});
  const v4 = await ask(p.proxy.port, [...GREETING, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80]);
  assert.deepEqual(v4.slice(2, 4), [5, REPLY.hostUnreachable]);
  const v6 = await ask(p.proxy.port, [...GREETING, 5, 1, 0, 4, ...new Array(15).fill(0), 1, 0, 22]);
  assert.deepEqual(v6.slice(2, 4), [5, REPLY.hostUnreachable]);
  assert.deepEqual(p.dials, ["10.0.0.1", "[0:0:0:0:0:0:0:1]"]);
});

Deno.test("refusal statuses map to SOCKS5 reply codes", () => {
  assert.equal(socksReplyOf(403, "access_denied"), REPLY.notAllowed);
  assert.equal(socksReplyOf(404, "unknown_service"), REPLY.hostUnreachable);
  assert.equal(socksReplyOf(400, "bad_mesh_name"), REPLY.hostUnreachable);
  assert.equal(socksReplyOf(503, "no_provider_online"), REPLY.networkUnreachable);
  assert.equal(socksReplyOf(502, "target_unreachable"), REPLY.connectionRefused);
  assert.equal(socksReplyOf(500, "internal"), REPLY.generalFailure);
});
