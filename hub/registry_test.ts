/**
 * The hub's registry in process: service rows and their providers, lookups
 * by name, and what its indexes must forget when endpoints change their
 * services or names, or are purged.
 */
import assert from "node:assert/strict";
import { Conflict, NotFound } from "@ztm/shared/errors";
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

Deno.test("an endpoint that rejoins under a new id replaces its offline self of the same user and name", () => {
  const r = new Registry({ purgeAfterMs: 60_000 });
  try {
    const old = join(r, "old-id", "laptop", "alice", [tcp("web")]);
    join(r, "other", "laptop", "bob", []);
    r.disconnect("old-id", old);
    const bobOld = r.get("other");
    join(r, "new-id", "Laptop", "alice", [tcp("web")]);
    const listed = r.page(ALL).items.map((e) => `${e.id}/${e.user}/${e.online}`);
    assert.deepEqual(listed.sort(), ["new-id/alice/true", "other/bob/true"]);
    assert.throws(() => r.get("old-id"), NotFound);
    assert.deepEqual(r.services(ALL).items[0].providers.map((p) => p.endpoint), ["new-id"]);
    assert.equal(bobOld.online, true, "another user's endpoint of that name stays");
  } finally {
    r.close();
  }
});
