/**
 * The hub's registry in process: service rows and their providers, lookups
 * by name, and what its indexes must forget when endpoints change their
 * services or names, or are purged.
 */
import assert from "node:assert/strict";
import { Conflict, NotFound, TooManyRequests } from "@ztm/shared/errors";
import type { PublishedService } from "@ztm/shared/protocol";
import { type ControlChannel, Registry } from "./registry.ts";

/** A control channel that delivers nowhere: the registry only keeps it. */
function channel(): ControlChannel {
  return { send() {}, close() {}, owner: {}, serial: "01" };
}

function tcp(name: string, users: string[] = []): PublishedService {
  return { proto: "tcp", name, users };
}

function join(r: Registry, id: string, name: string, user: string, services: PublishedService[]) {
  const control = channel();
  r.connect(id, { name, user, version: "t", address: "a", services, serial: "01" }, control);
  return control;
}

const ALL = { offset: 0, limit: 100 };

Deno.test("registry lists one service row per name and user, providers sorted by endpoint name", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    join(r, "e3", "zeta", "alice", [tcp("web", ["*"]), tcp("db")]);
    join(r, "e1", "alpha", "alice", [tcp("web", ["*"])]);
    join(r, "e2", "beta", "bob", [tcp("web")]);
    const page = r.services(ALL);
    assert.deepEqual(page.items.map((s) => `${s.name}/${s.user}`), [
      "db/alice",
      "web/alice",
      "web/bob",
    ]);
    assert.equal(page.total, 3);
    assert.deepEqual(page.items[1].providers, [
      { endpoint: "e1", name: "alpha", online: true, users: ["*"] },
      { endpoint: "e3", name: "zeta", online: true, users: ["*"] },
    ]);
    const db = r.services({ ...ALL, q: "DB" });
    assert.deepEqual(db.items.map((s) => s.name), ["db"]);
    assert.equal(r.services({ offset: 1, limit: 1 }).items[0].name, "web");
  } finally {
    r.close();
  }
});

Deno.test("registry forgets replaced services, offline providers stay listed until purged", async () => {
  const r = new Registry({ purgeAfterMs: 50 });
  try {
    const control = join(r, "e1", "alpha", "alice", [tcp("web"), tcp("db")]);
    r.setServices("e1", [tcp("db")]);
    assert.deepEqual(r.services(ALL).items.map((s) => s.name), ["db"]);
    r.disconnect("e1", control);
    assert.equal(r.services(ALL).items[0].providers[0].online, false);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(r.services(ALL).total, 0);
    assert.throws(() => r.get("alpha"), NotFound);
  } finally {
    r.close();
  }
});

Deno.test("registry finds endpoints by name case-insensitively, refuses an ambiguous name, follows a rename", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    join(r, "e1", "Laptop", "alice", []);
    assert.equal(r.get("laptop").id, "e1");
    join(r, "e2", "laptop", "bob", []);
    assert.throws(() => r.get("LAPTOP"), Conflict);
    join(r, "e2", "desk", "bob", [tcp("ssh")]);
    assert.equal(r.get("laptop").id, "e1");
    assert.equal(r.get("desk").id, "e2");
    assert.deepEqual(r.services(ALL).items[0].providers.map((p) => p.name), ["desk"]);
    assert.deepEqual(r.page(ALL).items.map((e) => e.name), ["desk", "Laptop"]);
  } finally {
    r.close();
  }
});

const id = (n: number) => `ep-${n.toString(16).padStart(32, "0")}`;

Deno.test("registry looks up id-shaped values by id only, anything else by name only", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    join(r, id(1), "alpha", "alice", []);
    assert.equal(r.get(id(1)).name, "alpha");
    assert.equal(r.get("alpha").id, id(1));
    assert.throws(() => r.get(id(2)), NotFound);
    assert.throws(() => r.get(id(1).toUpperCase()), NotFound);
  } finally {
    r.close();
  }
});

Deno.test("registry searches are name prefixes answered as ranges, with totals, and an id finds its endpoint", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    for (let i = 0; i < 300; i++) {
      join(r, id(i), `host-${String(i).padStart(3, "0")}`, i % 2 ? "alice" : "bob", [
        tcp(`svc-${String(299 - i).padStart(3, "0")}`),
      ]);
    }
    const page = r.page({ offset: 5, limit: 3, q: "HOST-01" });
    assert.equal(page.total, 10);
    assert.deepEqual(page.items.map((e) => e.name), ["host-015", "host-016", "host-017"]);
    assert.deepEqual(r.page({ offset: 0, limit: 5, q: id(7) }).items.map((e) => e.name), [
      "host-007",
    ]);
    assert.equal(r.page({ offset: 0, limit: 5, q: "nothing" }).total, 0);
    const svc = r.services({ offset: 8, limit: 5, q: "svc-2" });
    assert.equal(svc.total, 100);
    assert.deepEqual(svc.items.map((s) => s.name), [
      "svc-208",
      "svc-209",
      "svc-210",
      "svc-211",
      "svc-212",
    ]);
    assert.equal(r.services({ offset: 0, limit: 1 }).total, 300);
    assert.deepEqual(r.counts(), { endpoints: 300, online: 300 });
  } finally {
    r.close();
  }
});

Deno.test("registry caps each user's endpoints, counting offline ones until they are purged", async () => {
  const r = new Registry({ purgeAfterMs: 50, maxEndpointsPerUser: 2 });
  try {
    join(r, id(1), "a", "mallory", []);
    join(r, id(2), "b", "mallory", []);
    assert.throws(() => join(r, id(3), "c", "mallory", []), TooManyRequests);
    join(r, id(4), "d", "alice", []);
    join(r, id(1), "a", "mallory", []); // a known endpoint may come back
    r.disconnect(id(1), r.control(id(1))!);
    assert.throws(() => join(r, id(3), "c", "mallory", []), TooManyRequests);
    assert.deepEqual(r.counts(), { endpoints: 3, online: 2 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    join(r, id(3), "c", "mallory", []);
    assert.equal(r.endpointsOf("mallory"), 2);
  } finally {
    r.close();
  }
});

Deno.test("an endpoint that rejoins under a new id replaces its offline self of the same user and name", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    const old = join(r, id(101), "laptop", "alice", [tcp("web")]);
    join(r, id(102), "laptop", "bob", []);
    r.disconnect(id(101), old);
    const bobOld = r.get(id(102));
    join(r, id(103), "Laptop", "alice", [tcp("web")]);
    const listed = r.page(ALL).items.map((e) => `${e.id}/${e.user}/${e.online}`);
    assert.deepEqual(listed.sort(), [`${id(102)}/bob/true`, `${id(103)}/alice/true`]);
    assert.throws(() => r.get(id(101)), NotFound);
    assert.deepEqual(r.services(ALL).items[0].providers.map((p) => p.endpoint), [id(103)]);
    assert.equal(bobOld.online, true, "another user's endpoint of that name stays");
  } finally {
    r.close();
  }
});
