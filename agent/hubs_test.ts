import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import type { EndpointRecord, MeshService, Page } from "@ztm/shared/protocol";
import { HubSet, type HubSetOptions, mergeEndpoints, mergeServices, tryNextHub } from "./hubs.ts";
import { freePort } from "../tests/fixtures/net_helpers.ts";
import { RogueHub } from "../tests/fixtures/rogue_hub.ts";
import { memberConfig, memberHello } from "../tests/fixtures/member_config.ts";

const WAIT_MS = 10_000;

function endpoint(id: string, online: boolean, address = "a"): EndpointRecord {
  return { id, name: id, user: "alice", online, version: "t", address, services: [], since: "x" };
}

function page<T>(items: T[], total = items.length, limit = 100): Page<T> {
  return { items, total, offset: 0, limit };
}

Deno.test("only a hub that could not answer or does not see the target sends the request to the next", () => {
  assert.equal(tryNextHub(new Error("socket hang up")), true);
  assert.equal(tryNextHub(new ZtmError(503, "hub_unreachable", "x")), true);
  assert.equal(tryNextHub(new ZtmError(500, "internal", "x")), true);
  assert.equal(tryNextHub(new ZtmError(404, "unknown_endpoint", "x")), true);
  for (const status of [400, 401, 403, 409, 413, 429]) {
    assert.equal(tryNextHub(new ZtmError(status, "x", "x")), false, String(status));
  }
});

Deno.test("endpoint pages of several hubs merge by id, online if any hub sees the endpoint online", () => {
  const merged = mergeEndpoints([
    page([endpoint("a", false, "hub1"), endpoint("b", true, "hub1")]),
    page([endpoint("a", true, "hub2"), endpoint("c", false, "hub2"), endpoint("b", true, "hub2")]),
  ]);
  assert.deepEqual(merged.items.map((e) => [e.id, e.online, e.address]), [
    ["a", true, "hub2"],
    ["b", true, "hub1"],
    ["c", false, "hub2"],
  ]);
  assert.equal(merged.total, 3);
  // A full page stays at its limit; the total counts what the other hubs added.
  const full = mergeEndpoints([
    page([endpoint("a", true), endpoint("b", true)], 10, 2),
    page([endpoint("z", true)], 1, 2),
  ]);
  assert.deepEqual(full.items.map((e) => e.id), ["a", "b"]);
  assert.equal(full.total, 11);
  assert.equal(full.limit, 2);
});

Deno.test("service pages merge providers by endpoint, a provider online if any hub says so", () => {
  const svc = (providers: MeshService["providers"]): MeshService => ({
    proto: "tcp",
    name: "ssh",
    user: "alice",
    providers,
  });
  const p = (endpoint: string, online: boolean) => ({
    endpoint,
    name: endpoint,
    online,
    users: [],
  });
  const first = svc([p("e1", false)]);
  const merged = mergeServices([
    page([first]),
    page([svc([p("e1", true), p("e2", false)]), { ...svc([p("e3", true)]), proto: "udp" }]),
  ]);
  assert.deepEqual(
    merged.items.map((s) => [s.proto, s.providers.map((q) => `${q.endpoint}:${q.online}`)]),
    [["tcp", ["e1:true", "e2:false"]], ["udp", ["e3:true"]]],
  );
  // The first hub's page is not changed in place.
  assert.deepEqual(first.providers, [p("e1", false)]);
});

/** A hub set of a member of `hub`'s mesh with these bootstraps. */
async function hubSet(hub: RogueHub, bootstraps: string[], opts: Partial<HubSetOptions> = {}) {
  const user = await hub.user("alice");
  return new HubSet({
    config: memberConfig(hub.ca, user, bootstraps),
    log: new Logger("agent", { sink: () => {} }),
    hello: memberHello,
    onOpen: () => {},
    onManage: () => Promise.resolve({ status: 404, body: "{}" }),
    ...opts,
  });
}

Deno.test("a set with one live hub of two uses that one, and shows each hub's state", async () => {
  await using hub = await RogueHub.start();
  const dead = `127.0.0.1:${await freePort()}`;
  const set = await hubSet(hub, [dead, hub.address, dead]);
  hub.onRequest = (stream, headers) => {
    const path = String(headers[":path"]);
    stream.respond({ ":status": path === "/api/manage/x" ? 404 : 200 });
    stream.end(
      path === "/api/manage/x"
        ? JSON.stringify({ error: { code: "unknown_endpoint", message: "Not here" } })
        : JSON.stringify({ path }),
    );
  };
  try {
    assert.equal(set.links.length, 2, "a bootstrap named twice is one hub");
    await assert.rejects(set.request("GET", "/api/x"), /Not connected to any hub/);
    set.start();
    assert.equal(await set.firstSession(WAIT_MS), null);
    await set.waitConnected(WAIT_MS);
    const control = await hub.nextControl();
    assert.equal(set.state().connected, true);
    assert.equal(set.state().hub, hub.address);
    assert.equal(set.preferred()?.state().hub, hub.address);
    assert.deepEqual(set.live().map((l) => l.state().hub), [hub.address]);

    const states = set.hubs();
    assert.deepEqual(states.map((s) => [s.address, s.origin, s.connected]), [
      [dead, "bootstrap", false],
      [hub.address, "bootstrap", true],
    ]);
    assert.match(states[0].lastError ?? "", /ECONNREFUSED|refused/i);

    assert.deepEqual(await set.request("GET", "/api/x"), { path: "/api/x" });
    assert.deepEqual(await set.all((l) => l.request("GET", "/api/y")), [{ path: "/api/y" }]);
    // No other hub to ask: the hub's own "not here" answer is returned as it is.
    assert.equal((await set.manage("/api/manage/x", "{}")).status, 404);

    assert.equal(set.send({ type: "services", services: [] }), true);
    await control.waitFor((m) => m.type === "services", WAIT_MS);
  } finally {
    await set.close();
  }
  assert.equal(set.state().connected, false);
});

Deno.test("a set with no hub reachable names every hub and why", async () => {
  await using hub = await RogueHub.start();
  const a = `127.0.0.1:${await freePort()}`;
  const b = `127.0.0.1:${await freePort()}`;
  const set = await hubSet(hub, [a, b]);
  try {
    set.start();
    const failures = await set.firstSession(WAIT_MS);
    assert.deepEqual(failures?.map((f) => f.hub).sort(), [a, b].sort());
    await assert.rejects(set.waitConnected(1), (err: unknown) => {
      assert.ok(err instanceof ZtmError);
      assert.equal(err.code, "hub_unreachable");
      assert.match(err.message, new RegExp(`^Not connected to any hub \\(${a}: .+; ${b}: .+\\)$`));
      return true;
    });
    await assert.rejects(set.all(() => Promise.resolve(1)), /Not connected to any hub/);
    assert.equal(set.state().connected, false);
    assert.ok(set.state().lastError);
  } finally {
    await set.close();
  }
});
