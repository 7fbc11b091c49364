import assert from "node:assert/strict";
import { Conflict, ServiceUnavailable } from "@ztm/shared/errors";
import { curl, exchangeRaw, startHttp, startTestProxy } from "./_fixture.ts";
import { MAX_HEAD_BYTES, parseProxyHead } from "./http_proxy.ts";
import { ProxyInputError } from "./conn_reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function head(text: string): Uint8Array {
  return enc.encode(text);
}

Deno.test("plain-HTTP proxy heads are rewritten to origin-form with Connection: close", () => {
  const r = parseProxyHead(head(
    "GET http://web.mesh:8080/a/b?c=d#frag HTTP/1.1\r\nHost: web.mesh:8080\r\n" +
      "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nConnection: keep-alive\r\n" +
      "Accept: */*\r\n\r\n",
  ));
  assert.equal(r.host, "web.mesh");
  assert.equal(r.port, 8080);
  assert.equal(
    dec.decode(r.head!),
    "GET /a/b?c=d HTTP/1.1\r\nHost: web.mesh:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n",
  );
  const bare = parseProxyHead(head("GET http://web.mesh?x HTTP/1.0\r\n\r\n"));
  assert.equal(
    dec.decode(bare.head!),
    "GET /?x HTTP/1.0\r\nHost: web.mesh\r\nConnection: close\r\n\r\n",
  );
  assert.equal(bare.port, 80);
  const connect = parseProxyHead(head("CONNECT ssh.office.mesh:22 HTTP/1.1\r\nHost: x\r\n\r\n"));
  assert.deepEqual(connect, { method: "CONNECT", host: "ssh.office.mesh", port: 22, head: null });
  assert.equal(parseProxyHead(head("CONNECT [::1]:443 HTTP/1.1\r\n\r\n")).host, "[::1]");
});

Deno.test("malformed proxy heads are refused with what is wrong", () => {
  const bad = [
    "GET /origin-form HTTP/1.1\r\n\r\n",
    "GET https://web.mesh/ HTTP/1.1\r\n\r\n",
    "CONNECT web.mesh HTTP/1.1\r\n\r\n",
    "CONNECT web.mesh:0 HTTP/1.1\r\n\r\n",
    "CONNECT web.mesh:99999 HTTP/1.1\r\n\r\n",
    "GET http://user@web.mesh/ HTTP/1.1\r\n\r\n",
    "GET  http://web.mesh/ HTTP/1.1\r\n\r\n",
    "GET http://web.mesh/ HTTP/2\r\n\r\n",
    "GET http://web.mesh/ HTTP/1.1\r\nno colon\r\n\r\n",
    "GET http://web.mesh/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
    "GET http://web.mesh/ HTTP/1.1\r\nX: a\nEvil: b\r\n\r\n",
    "GET http://web.mesh/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
    "GET http://web.mesh/ HTTP/1.1\r\nX: a\0\r\n\r\n",
    "GET http://web.mesh/a\nX HTTP/1.1\r\n\r\n",
  ];
  for (const text of bad) {
    assert.throws(() => parseProxyHead(head(text)), ProxyInputError, JSON.stringify(text));
  }
});

Deno.test("HTTP refusals are plain-text answers with fitting statuses and one log line each", async () => {
  await using p = startTestProxy({}, {
    errors: {
      both: new Conflict("ambiguous_service", "Several users offer tcp/both: bob, carol; name one"),
      off: new ServiceUnavailable("no_provider_online", "No provider of tcp/off is online"),
    },
  });
  const at = `http://127.0.0.1:${p.proxy.port}`;
  const cases: [string, number, RegExp][] = [
    ["nope", 502, /No endpoint offers tcp\/nope/],
    ["denied", 403, /may not use tcp\/denied/],
    ["both", 409, /bob, carol/],
    ["off", 503, /is online/],
  ];
  for (const [name, status, message] of cases) {
    const r = await curl(["-x", at, "-w", "\n%{http_code}", `http://${name}.mesh/`]);
    const cut = r.out.lastIndexOf("\n");
    const [body, code] = [r.out.slice(0, cut), r.out.slice(cut + 1)];
    assert.equal(Number(code), status, name);
    assert.match(body, message);
    // CONNECT: curl reports the proxy's status.
    const c = await curl(["-p", "-x", at, `http://${name}.mesh/`]);
    assert.notEqual(c.code, 0);
    assert.match(c.err, new RegExp(`CONNECT.*${status}|${status}`));
  }
  assert.equal(p.lines.filter((l) => l.msg === "proxy refused").length, cases.length * 2);
});

Deno.test("malformed and oversized HTTP input gets 400 and the proxy keeps serving", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port });
  const answer = async (text: string | Uint8Array) =>
    dec.decode(await exchangeRaw(p.proxy.port, typeof text === "string" ? enc.encode(text) : text));
  assert.match(
    await answer("GET / HTTP/1.1\r\nHost: web.mesh\r\n\r\n"),
    /^HTTP\/1\.1 400 [^]*not a proxy request/,
  );
  assert.match(
    await answer("GET http://web.mesh/ HTTP/1.1\r\n"),
    /^HTTP\/1\.1 400 [^]*ended early/,
  );
  const huge = "GET http://web.mesh/ HTTP/1.1\r\nX: " + "a".repeat(MAX_HEAD_BYTES) + "\r\n\r\n";
  assert.match(await answer(huge), /^HTTP\/1\.1 400 [^]*longer than 16384 bytes/);
  // Seeded fuzz of request heads: each answered or closed, nothing dialled but web.mesh.
  let seed = 11;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const alphabet = "GETCONNECT http://web.mesh:80/ \r\n:Hx\x00\xff[]@";
  for (let i = 0; i < 200; i++) {
    const text = "G" + Array.from({ length: rand(80) }, () =>
      alphabet[rand(alphabet.length)]).join("") +
      "\r\n\r\n";
    const got = await answer(text);
    assert.ok(
      got === "" || /^HTTP\/1\.1 (400|502|200) /.test(got) || got.includes("hello from web"),
      got,
    );
  }
  assert.ok(p.dials.every((d) => d.length < 100));
  const ok = await curl(["-x", `http://127.0.0.1:${p.proxy.port}`, "http://web.mesh/still"]);
  assert.equal(ok.out, "hello from web /still\n");
});

Deno.test("a POST body travels through the plain-HTTP proxy", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port });
  const r = await curl([
    "-x",
    `http://127.0.0.1:${p.proxy.port}`,
    "-d",
    "x=1",
    "http://web.mesh/post",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, "hello from web /post\n");
});
