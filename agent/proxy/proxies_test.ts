/**
 * The agent's proxies, one per mesh, on real loopback ports: a `PUT …/proxy`
 * body is checked (loopback only); a proxy starts, moves, keeps its port when
 * only the exit changes, stays as it was when a move fails, shows a failed
 * resume in its status, asks for the mesh's current runtime per connection,
 * and frees its port when stopped.
 */
import assert from "node:assert/strict";
import type { ZtmError } from "@ztm/shared/errors";
import { connLeg } from "@ztm/shared/splice";
import type { MeshRuntime } from "../runtime.ts";
import type { ProxyTunnels } from "./mesh_dialer.ts";
import { checkProxyBody, DEFAULT_PROXY_LISTEN, MeshProxies } from "./proxies.ts";
import { exchangeRaw, memoryLog, startHttp } from "./_fixture.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The port of a proxy's `host:port` address. */
function portOf(address: string | null): number {
  assert.ok(address);
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** True when something accepts TCP connections on the loopback `port`. */
async function accepts(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** A plain-HTTP proxy request for `url`; the proxy's answer as text. */
async function get(port: number, url: string): Promise<string> {
  const host = new URL(url).host;
  const head = enc.encode(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  return dec.decode(await exchangeRaw(port, head, { halfClose: false }));
}

Deno.test("a proxy body defaults to 127.0.0.1:1080, keeps an exit, and is written in one spelling", () => {
  assert.deepEqual(checkProxyBody({}), { listen: DEFAULT_PROXY_LISTEN });
  assert.deepEqual(checkProxyBody({ listen: "[::1]:1081", exit: "gw" }), {
    listen: "[::1]:1081",
    exit: "gw",
  });
  assert.deepEqual(checkProxyBody({ listen: "localhost:9000", exit: null }), {
    listen: "localhost:9000",
  });
  assert.deepEqual(checkProxyBody({ listen: "127.0.0.2:0" }), { listen: "127.0.0.2:0" });
});

Deno.test("a proxy body that is not a loopback host:port or names a bad exit is refused with 400", () => {
  const refused = (body: Record<string, unknown>, code: string, message?: RegExp) =>
    assert.throws(() => checkProxyBody(body), (e: ZtmError) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, code);
      if (message) assert.match(e.message, message);
      return true;
    }, JSON.stringify(body));
  refused({ port: 1080 }, "bad_request", /Unknown field "port"/);
  refused({ exit: 7 }, "bad_exit");
  refused({ exit: "no spaces" }, "bad_exit");
  refused({ listen: 1080 }, "bad_listen");
  refused({ listen: "127.0.0.1:" + "1".repeat(100) }, "bad_listen");
  refused({ listen: "::1:1080" }, "bad_listen", /IPv6/);
  refused({ listen: "127.0.0.1:99999" }, "bad_listen");
  refused({ listen: "0.0.0.0:1080" }, "listen_not_loopback", /"0\.0\.0\.0"/);
  refused({ listen: "192.168.1.2:1080" }, "listen_not_loopback");
  refused({ listen: "[::]:1080" }, "listen_not_loopback");
});

Deno.test("a proxy starts, keeps its port when only the exit changes, moves, and stops", async () => {
  const { log, lines } = memoryLog();
  const proxies = new MeshProxies({ log, runtimeOf: () => undefined });
  try {
    assert.deepEqual(proxies.status("m", null), {
      enabled: false,
      listen: null,
      listening: false,
      address: null,
      error: null,
      connections: 0,
    });
    await proxies.start("m", { listen: "127.0.0.1:0" });
    const first = proxies.status("m", { listen: "127.0.0.1:0" });
    assert.equal(first.enabled, true);
    assert.equal(first.listening, true);
    assert.equal(first.state?.connections, 0);
    const port = portOf(first.address);
    // No exit: a name outside the mesh is refused before the runtime is asked.
    assert.match(await get(port, "http://intranet.lan/"), /this proxy has no exit/);

    // Only the exit changes: the same listener, and new connections go through the exit.
    await proxies.start("m", { listen: "127.0.0.1:0", exit: "gw" });
    assert.equal(proxies.status("m", { listen: "127.0.0.1:0" }).address, first.address);
    assert.match(await get(port, "http://intranet.lan/"), /Mesh "m" is not running/);

    // Another address: the proxy moves, the old port is freed.
    await proxies.start("m", { listen: "127.0.0.2:0" });
    const moved = proxies.status("m", { listen: "127.0.0.2:0" });
    assert.match(moved.address ?? "", /^127\.0\.0\.2:\d+$/);
    assert.equal(await accepts(port), false, "the old port was freed");

    await proxies.stop("m");
    const stopped = proxies.status("m", null);
    assert.equal(stopped.listening, false);
    assert.equal(stopped.address, null);
    assert.equal(
      await accepts(portOf(moved.address)),
      false,
      "a stopped proxy's port is free",
    );
    assert.ok(lines.some((l) => l.msg === "proxy stopped" && l.mesh === "m"));
    await proxies.stop("m"); // nothing runs: nothing happens
  } finally {
    await proxies.close();
  }
});

Deno.test("a move to a taken port is refused 409 and the running proxy stays; a failed resume shows", async () => {
  const { log, lines } = memoryLog();
  const proxies = new MeshProxies({ log, runtimeOf: () => undefined });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busy = `127.0.0.1:${taken.addr.port}`;
  try {
    await proxies.start("m", { listen: "127.0.0.1:0" });
    const before = proxies.status("m", { listen: "127.0.0.1:0" }).address;
    await assert.rejects(proxies.start("m", { listen: busy }), (e: ZtmError) => {
      assert.equal(e.status, 409);
      assert.equal(e.code, "port_in_use");
      assert.match(e.message, new RegExp(busy));
      return true;
    });
    assert.equal(proxies.status("m", { listen: busy }).address, before);
    assert.equal(await accepts(portOf(before)), true, "the running proxy still serves");

    // At agent start a taken port leaves the proxy off, with the reason in its status.
    await proxies.resume("n", { listen: busy });
    const off = proxies.status("n", { listen: busy });
    assert.equal(off.enabled, true);
    assert.equal(off.listening, false);
    assert.match(off.error ?? "", /already in use/);
    assert.ok(lines.some((l) => l.msg === "proxy not reopened" && l.mesh === "n"));
    // Stopping forgets the failure.
    await proxies.stop("n");
    assert.equal(proxies.status("n", { listen: busy }).error, null);
  } finally {
    taken.close();
    await proxies.close();
  }
  assert.equal(proxies.status("m", null).listening, false, "close stops every proxy");
});

Deno.test("each connection asks for the mesh's runtime as it is then", async () => {
  const { log } = memoryLog();
  await using web = startHttp("web");
  const tunnels: ProxyTunnels = {
    services: () =>
      Promise.resolve([{
        proto: "tcp",
        name: "web",
        user: "bob",
        providers: [{ endpoint: "ep-1", name: "one", online: true, users: [] }],
      }]),
    openTunnel: async () => ({
      leg: connLeg(await Deno.connect({ hostname: "127.0.0.1", port: web.port })),
      release: () => {},
    }),
  };
  let runtime: MeshRuntime | undefined;
  const proxies = new MeshProxies({ log, runtimeOf: () => runtime });
  try {
    await proxies.start("m", { listen: "127.0.0.1:0" });
    const port = portOf(proxies.status("m", { listen: "127.0.0.1:0" }).address);
    assert.match(await get(port, "http://web.mesh/x"), /^HTTP\/1\.1 503[^]*not running/);
    // The mesh (re)starts under the running proxy: the next connection gets through.
    runtime = { proxyTunnels: () => tunnels } as unknown as MeshRuntime;
    assert.match(await get(port, "http://web.mesh/x"), /hello from web \/x/);
    assert.equal(web.accepted, 1);
  } finally {
    await proxies.close();
  }
});
