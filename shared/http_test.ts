/**
 * The HTTP plumbing, through a real socket where it matters: routing, body
 * limits, the error renderer and access log, Host/Origin checks and tokens.
 */
import assert from "node:assert/strict";
import { BadRequest } from "./errors.ts";
import {
  checkHostAndOrigin,
  createRouter,
  hasBearerToken,
  hostOfHeader,
  json,
  readBytes,
  readJsonObject,
  readText,
  serveHttp,
} from "./http.ts";
import { Logger } from "./log.ts";

/** A server on 127.0.0.1:0 for `app`, its log lines, and disposal that waits for shutdown. */
function serve(app: Parameters<typeof serveHttp>[0]["app"]) {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("test", { level: "debug", sink: (l) => lines.push(JSON.parse(l)) });
  const server = serveHttp({ listen: { hostname: "127.0.0.1", port: 0 }, app, log });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    lines,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A request whose body streams `chunks` without a declared length. */
function streamed(chunks: number[]): Request {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const n of chunks) c.enqueue(new Uint8Array(n));
      c.close();
    },
  });
  return new Request("http://x/", { method: "POST", body });
}

const router = createRouter([
  { method: "GET", pattern: "/api/things", handler: () => json([]) },
  { method: "GET", pattern: "/api/things/:name", handler: (_r, p) => json({ name: p.name }) },
  {
    method: "DELETE",
    pattern: "/api/things/:name",
    handler: () => new Response(null, { status: 204 }),
  },
  {
    method: "POST",
    pattern: "/api/echo",
    handler: async (req) => json(await readJsonObject(req, 64)),
  },
  {
    method: "GET",
    pattern: "/api/refuse",
    handler: () => {
      throw new BadRequest("bad_thing", 'Bad thing "x"');
    },
  },
  {
    method: "GET",
    pattern: "/api/crash",
    handler: () => {
      throw new Error("secret detail");
    },
  },
]);

Deno.test("the router passes percent-decoded parameters to the matching route", async () => {
  await using s = serve(router);
  const res = await fetch(`${s.url}/api/things/a%20b%2Fc`);
  assert.deepEqual(await res.json(), { name: "a b/c" });
  const list = await fetch(`${s.url}/api/things`);
  assert.deepEqual(await list.json(), []);
});

Deno.test("errors are rendered as JSON with their status, 405 with Allow, and 500 hides details", async () => {
  await using s = serve(router);
  const cases: [string, string, number, string][] = [
    ["GET", "/api/nothing", 404, "unknown_route"],
    ["GET", "/api/things/x/y", 404, "unknown_route"],
    ["PUT", "/api/things/x", 405, "method_not_allowed"],
    ["GET", "/api/things/%E0%A4%A", 400, "bad_path"],
    ["GET", "/api/refuse", 400, "bad_thing"],
    ["GET", "/api/crash", 500, "internal"],
  ];
  for (const [method, path, status, code] of cases) {
    const res = await fetch(`${s.url}${path}`, { method });
    assert.equal(res.status, status, `${method} ${path}`);
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    const body = await res.json();
    assert.equal(body.error.code, code);
    assert.equal(typeof body.error.message, "string");
    if (status === 405) assert.equal(res.headers.get("allow"), "GET, DELETE");
    if (status === 500) assert.doesNotMatch(JSON.stringify(body), /secret/);
  }
  // The 500's detail went to the log, and every request left one access line.
  const failed = s.lines.find((l) => l.msg === "request failed");
  assert.equal(failed?.err, "secret detail");
  const access = s.lines.filter((l) => l.msg === "request");
  assert.deepEqual(access.map((l) => l.status), [404, 404, 405, 400, 400, 500]);
  assert.ok(access.every((l) => typeof l.ms === "number" && typeof l.path === "string"));
});

Deno.test("serveHttp logs the bound address once listening", async () => {
  await using s = serve(router);
  const listening = s.lines.find((l) => l.msg === "listening");
  assert.equal(listening?.addr, s.url.replace("http://", ""));
});

Deno.test("readBytes enforces the limit on declared and streamed bodies", async () => {
  const ok = await readBytes(new Request("http://x/", { method: "POST", body: "12345" }), 5);
  assert.equal(new TextDecoder().decode(ok), "12345");
  assert.equal((await readBytes(new Request("http://x/"), 5)).length, 0);
  await assert.rejects(
    readBytes(new Request("http://x/", { method: "POST", body: "123456" }), 5),
    { status: 413, code: "body_too_large" },
  );
  assert.equal((await readBytes(streamed([3, 3, 4]), 10)).length, 10);
  await assert.rejects(readBytes(streamed([3, 3, 5]), 10), { status: 413 });
});

Deno.test("readText refuses bytes that are not UTF-8 and readJsonObject refuses non-objects", async () => {
  const post = (body: BodyInit) => new Request("http://x/", { method: "POST", body });
  assert.equal(await readText(post("héllo"), 100), "héllo");
  await assert.rejects(readText(post(new Uint8Array([0xc3, 0x28])), 100), {
    status: 400,
    code: "bad_encoding",
  });
  assert.deepEqual(await readJsonObject(post('{"a":1}'), 100), { a: 1 });
  for (const body of ["", "nope", "[1]", "null", "3"]) {
    await assert.rejects(readJsonObject(post(body), 100), { status: 400, code: "bad_json" }, body);
  }
});

Deno.test("an over-long body answers 413 through a real socket", async () => {
  await using s = serve(router);
  const res = await fetch(`${s.url}/api/echo`, { method: "POST", body: "x".repeat(65) });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, "body_too_large");
  const ok = await fetch(`${s.url}/api/echo`, { method: "POST", body: '{"k":"v"}' });
  assert.deepEqual(await ok.json(), { k: "v" });
});

Deno.test("hostOfHeader strips the port and IPv6 brackets", () => {
  assert.equal(hostOfHeader("localhost:9999"), "localhost");
  assert.equal(hostOfHeader("[::1]:80"), "::1");
  assert.equal(hostOfHeader("[::1]"), "::1");
  assert.equal(hostOfHeader("example.com"), "example.com");
  assert.equal(hostOfHeader("127.0.0.1:"), "127.0.0.1");
});

Deno.test("checkHostAndOrigin refuses foreign hosts when loopback-only and foreign origins always", () => {
  const req = (headers: Record<string, string>) => new Request("http://x/", { headers });
  for (const host of ["localhost:1", "127.0.0.1:9999", "[::1]:80", "app.localhost"]) {
    checkHostAndOrigin(req({ host }), true);
    checkHostAndOrigin(req({ host, origin: `http://${host}` }), true);
  }
  for (const host of ["evil.example", "evil.example:9999", "10.0.0.1:9999", ""]) {
    assert.throws(() => checkHostAndOrigin(req({ host }), true), {
      status: 403,
      code: "foreign_host",
    });
    if (host) checkHostAndOrigin(req({ host }), false);
  }
  for (
    const origin of ["http://evil.example", "null", "https://localhost:1", "http://localhost:2"]
  ) {
    assert.throws(() => checkHostAndOrigin(req({ host: "localhost:1", origin }), true), {
      status: 403,
      code: "foreign_origin",
    });
    assert.throws(() => checkHostAndOrigin(req({ host: "ca.example:1", origin }), false), {
      code: "foreign_origin",
    });
  }
});

Deno.test("hasBearerToken accepts exactly the token", () => {
  const token = "0123456789abcdef0123456789abcdef";
  const req = (authorization?: string) =>
    new Request("http://x/", { headers: authorization === undefined ? {} : { authorization } });
  assert.ok(hasBearerToken(req(`Bearer ${token}`), token));
  assert.ok(hasBearerToken(req(`bearer  ${token}`), token));
  for (
    const a of [
      undefined,
      "",
      "Bearer",
      `Bearer ${token}x`,
      `Bearer ${token.slice(1)}`,
      `Basic ${token}`,
      `Bearer ${token} extra`,
      token,
    ]
  ) {
    assert.ok(!hasBearerToken(req(a), token), String(a));
  }
});
