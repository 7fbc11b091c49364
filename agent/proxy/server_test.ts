import assert from "node:assert/strict";
import { curl, deadline, exchangeRaw, readAll, startHttp, startTestProxy } from "./_fixture.ts";

Deno.test("one port serves curl over SOCKS5, HTTP CONNECT and plain HTTP by name", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port });
  const at = `127.0.0.1:${p.proxy.port}`;
  const socks = await curl(["--socks5-hostname", at, "http://web.mesh/a?b=1"]);
  assert.equal(socks.code, 0, socks.err);
  assert.equal(socks.out, "hello from web /a?b=1\n");
  const plain = await curl(["-x", `http://${at}`, "http://web.mesh/plain"]);
  assert.equal(plain.code, 0, plain.err);
  assert.equal(plain.out, "hello from web /plain\n");
  const connect = await curl(["-p", "-x", `http://${at}`, "http://web.mesh:8080/tunnel"]);
  assert.equal(connect.code, 0, connect.err);
  assert.equal(connect.out, "hello from web /tunnel\n");
  assert.equal(web.accepted, 3);
  assert.deepEqual(p.dials, ["web.mesh", "web.mesh", "web.mesh"]);
});

Deno.test("first bytes that are neither SOCKS5 nor HTTP are closed with one log line", async () => {
  await using p = startTestProxy({});
  const socks4 = await exchangeRaw(p.proxy.port, new Uint8Array([4, 1, 0, 80, 127, 0, 0, 1, 0]));
  assert.deepEqual([...socks4.subarray(0, 2)], [0, 0x5b]);
  assert.equal((await exchangeRaw(p.proxy.port, new Uint8Array([0x16, 3, 1]))).byteLength, 0);
  const lines = p.lines.filter((l) => l.msg === "proxy request malformed");
  assert.equal(lines.length, 2);
  assert.match(String(lines[1].err), /first byte 0x16 is neither SOCKS5 nor HTTP/);
  assert.deepEqual(p.dials, []);
});

Deno.test("a client that never finishes its handshake is closed at the setup deadline", async () => {
  await using p = startTestProxy({}, { setupMs: 200 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: p.proxy.port });
  await conn.write(new TextEncoder().encode("GET http://web.mesh/ HTTP/1.1\r\n"));
  const got = await deadline(readAll(conn), 10_000, "the proxy closing a slow client");
  conn.close();
  assert.equal(got.byteLength, 0);
  assert.ok(p.lines.some((l) => l.msg === "proxy request timed out"));
  assert.equal(p.proxy.connections, 0);
});

Deno.test("connections beyond the cap are closed at accept, and the proxy serves again after", async () => {
  await using web = startHttp("web");
  await using p = startTestProxy({ web: web.port }, { maxConnections: 2 });
  const held = await Promise.all(
    [0, 1].map(() => Deno.connect({ hostname: "127.0.0.1", port: p.proxy.port })),
  );
  // Wait until both are accepted (counted), then a third is closed with nothing said.
  const until = Date.now() + 10_000;
  while (p.proxy.connections < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await exchangeRaw(p.proxy.port, new Uint8Array([5, 1, 0]))).byteLength, 0);
  assert.equal(
    p.lines.filter((l) => l.msg === "proxy full: connections closed at accept").length,
    1,
  );
  for (const c of held) c.close();
  const ok = await deadline(
    (async () => {
      while (true) {
        const r = await curl([
          "--socks5-hostname",
          `127.0.0.1:${p.proxy.port}`,
          "http://web.mesh/",
        ]);
        if (r.code === 0) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
    })(),
    10_000,
    "the proxy serving again",
  );
  assert.equal(ok.out, "hello from web /\n");
});
