/**
 * A TCP port mapping on a real loopback port, its tunnels real TLS pairs to
 * providers (`peer/_fixture.ts`; a splicer stands in for the hub's data port
 * and a small stand-in answers the hub's service listing): connections
 * rotate over the pool's online providers, a failing provider is retried
 * once and skipped, refusals close the client with a counted reason, the
 * pool's user is fixed at first use, and `close()` frees the port and ends
 * live connections.
 */
import assert from "node:assert/strict";
import { agentError } from "@ztm/shared/agent_api";
import type { MeshService } from "@ztm/shared/protocol";
import { freePort } from "../tests/fixtures/net_helpers.ts";
import type { HubSet } from "./hubs.ts";
import { type PairMesh, startPairMesh } from "./peer/_fixture.ts";
import { PortMap, retryable } from "./port_map.ts";
import { deadline, memoryLog, readAll } from "./proxy/_fixture.ts";
import type { PortMapping } from "./runtime.ts";
import { Tally } from "./tunnel_state.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Bob's (or `user`'s) `tcp/echo` as the hub lists it, with `online` and offline providers. */
function echoService(online: string[], offline: string[] = [], user = "bob"): MeshService {
  const provider = (endpoint: string, up: boolean) => ({
    endpoint,
    name: endpoint.replace(/^\w+-/, "n"),
    online: up,
    users: [],
  });
  return {
    proto: "tcp",
    name: "echo",
    user,
    providers: [...online.map((e) => provider(e, true)), ...offline.map((e) => provider(e, false))],
  };
}

/** The hub as a mapping sees it: a service listing, and tickets for pairs to `m`'s endpoints. */
function hubOf(m: PairMesh, listing: () => MeshService[]) {
  const tunnels: string[] = [];
  let listed = 0;
  const link = {
    services: () => {
      listed++;
      const items = listing();
      return Promise.resolve({ items, total: items.length, offset: 0, limit: 500 });
    },
    tunnel: (
      path: string,
      open: (t: ReturnType<PairMesh["ticket"]>, d: PairMesh["data"]) => unknown,
    ) => {
      const endpoint = decodeURIComponent(path.split("/")[3]);
      tunnels.push(endpoint);
      return open(m.ticket(endpoint), m.data);
    },
  } as unknown as HubSet;
  return { link, tunnels, listed: () => listed };
}

/** A mapping of `target` on a free loopback port, through `link` and `m`'s dialer. */
async function mapping(
  m: PairMesh,
  link: HubSet,
  target: PortMapping["target"],
  opts: { userFixed?: (mapping: PortMapping, user: string) => void } = {},
) {
  const { log, lines } = memoryLog();
  const state = new Tally();
  const spec: PortMapping = { ip: "127.0.0.1", proto: "tcp", port: await freePort(), target };
  const map = new PortMap({
    mapping: spec,
    link,
    dialer: m.dialer,
    log,
    mesh: "m",
    state,
    userFixed: opts.userFixed,
  });
  await map.listen();
  return { map, port: spec.port, lines, state, [Symbol.asyncDispose]: () => map.close() };
}

/** Sends `text` through the mapping on `port` and returns what comes back before the end. */
async function through(port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(enc.encode(text));
    await conn.closeWrite();
    return dec.decode(await deadline(readAll(conn), 10_000, "the mapping's answer"));
  } finally {
    conn.close();
  }
}

Deno.test("connections rotate over the pool's online providers, each end to end", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1", "bob-2"] });
  const hub = hubOf(m, () => [echoService(["bob-1", "bob-2"], ["bob-3"])]);
  await using p = await mapping(m, hub.link, { service: "echo", user: "bob" });
  for (let i = 0; i < 4; i++) assert.equal(await through(p.port, `hello ${i}`), `hello ${i}`);
  assert.deepEqual(hub.tunnels, ["bob-1", "bob-2", "bob-1", "bob-2"]);
  assert.equal(hub.listed(), 1, "a fresh listing is reused");
  assert.equal(m.providers.get("bob-1")!.echo.accepted, 2);
  assert.equal(m.providers.get("bob-2")!.echo.accepted, 2);
  assert.equal(p.state.connections, 4);
});

Deno.test("a pinned endpoint takes only that provider, by id or name", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1", "bob-2"] });
  const hub = hubOf(m, () => [echoService(["bob-1", "bob-2"])]);
  await using byName = await mapping(m, hub.link, { service: "echo", user: "bob", endpoint: "n2" });
  await using byId = await mapping(m, hub.link, {
    service: "echo",
    user: "bob",
    endpoint: "bob-1",
  });
  for (let i = 0; i < 2; i++) assert.equal(await through(byName.port, "x"), "x");
  assert.equal(await through(byId.port, "y"), "y");
  assert.deepEqual(hub.tunnels, ["bob-2", "bob-2", "bob-1"]);
});

Deno.test("a provider that fails is tried once more, then skipped for the next; the listing is asked again", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1"] });
  // bob-gone is listed online, but no ticket reaches it.
  const hub = hubOf(m, () => [echoService(["bob-gone", "bob-1"])]);
  await using p = await mapping(m, hub.link, { service: "echo", user: "bob" });
  assert.equal(await through(p.port, "still served"), "still served");
  assert.deepEqual(hub.tunnels, ["bob-gone", "bob-gone", "bob-1"]);
  assert.ok(p.lines.some((l) => l.msg === "tunnel retried" && l.endpoint === "bob-gone"));
  assert.ok(p.lines.some((l) => l.msg === "tunnel failed" && l.endpoint === "bob-gone"));
  assert.equal(p.state.failures.get("failing"), 1);
  await through(p.port, "again");
  assert.equal(hub.listed(), 2, "a failed open drops the listing");
});

Deno.test("only pair failures on the way are retried at the same provider", () => {
  assert.equal(retryable(agentError("pair_failed", "x")), true);
  assert.equal(retryable(agentError("peer_closed", "x")), true);
  assert.equal(retryable(agentError("data_port_unreachable", "x")), true);
  assert.equal(retryable(new Error("reset")), true);
  assert.equal(retryable(agentError("access_denied", "x")), false);
  assert.equal(retryable(agentError("target_unreachable", "x")), false);
});

Deno.test("with no usable provider the client is closed without a byte and the reason counted", async (t) => {
  using m = await startPairMesh({ endpoints: ["bob-1"] });
  const cases: [string, MeshService[], PortMapping["target"], string][] = [
    ["nobody offers it", [], { service: "echo" }, "unknown_service"],
    [
      "another user's only",
      [echoService(["bob-1"], [], "carol")],
      { service: "echo", user: "bob" },
      "unknown_service",
    ],
    [
      "two users, none named",
      [echoService(["bob-1"]), echoService(["carol-1"], [], "carol")],
      { service: "echo" },
      "ambiguous_service",
    ],
    ["all offline", [echoService([], ["bob-1"])], { service: "echo" }, "no_provider_online"],
    [
      "the pinned one is not there",
      [echoService(["bob-1"])],
      { service: "echo", endpoint: "bob-9" },
      "no_provider_online",
    ],
  ];
  for (const [name, listing, target, code] of cases) {
    await t.step(name, async () => {
      const hub = hubOf(m, () => listing);
      await using p = await mapping(m, hub.link, target);
      assert.equal(await through(p.port, "anyone?"), "");
      assert.equal(p.state.lastError?.code, code);
      assert.deepEqual(hub.tunnels, []);
      assert.ok(p.lines.some((l) => l.msg === "tunnel failed"));
    });
  }
  assert.equal(m.providers.get("bob-1")!.echo.accepted, 0);
});

Deno.test("a mapping made without a user keeps the first user it finds, also when another publishes the name", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1"] });
  let listing = [echoService(["bob-gone"])];
  const hub = hubOf(m, () => listing);
  const fixed: string[] = [];
  await using p = await mapping(m, hub.link, { service: "echo" }, {
    userFixed: (_, user) => {
      fixed.push(user);
      throw new Error("disk full"); // still fixed in memory
    },
  });
  assert.equal(await through(p.port, "first"), "", "bob-gone takes no tunnel");
  assert.deepEqual(fixed, ["bob"]);
  assert.ok(p.lines.some((l) => l.msg === "pool user not stored" && l.err === "disk full"));
  // Carol publishes the same name: the mapping stays bob's, not ambiguous.
  listing = [echoService(["bob-1"]), echoService(["carol-1"], [], "carol")];
  assert.equal(await through(p.port, "second"), "second");
  assert.equal(hub.tunnels.at(-1), "bob-1");
  assert.deepEqual(fixed, ["bob"], "fixed once");
});

Deno.test("close frees the port and ends the mapping's live connections", async () => {
  using m = await startPairMesh({ endpoints: ["bob-1"] });
  const hub = hubOf(m, () => [echoService(["bob-1"])]);
  await using p = await mapping(m, hub.link, { service: "echo", user: "bob" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: p.port });
  try {
    await conn.write(enc.encode("open "));
    const buf = new Uint8Array(16);
    const n = await deadline(conn.read(buf), 10_000, "the echo");
    assert.equal(dec.decode(buf.subarray(0, n ?? 0)), "open ");
    await p.map.close();
    assert.equal((await deadline(readAll(conn), 5_000, "the end")).byteLength, 0);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: p.port }));
  } finally {
    conn.close();
  }
});
