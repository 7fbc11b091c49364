import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Conflict, NotFound } from "@ztm/shared/errors";
import { AgentStore } from "./store.ts";
import type { LocalService, MeshConfig, PortMapping } from "./runtime.ts";

function meshConfig(name: string): MeshConfig {
  return {
    name,
    ca: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
    certificate: "-----BEGIN CERTIFICATE-----\nuser\n-----END CERTIFICATE-----\n",
    privateKey: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n",
    bootstraps: ["hub.example.com:8888", "[::1]:8888"],
    endpointId: `ep-${"a".repeat(32)}`,
    endpointSeed: "seed",
    endpointName: "laptop",
  };
}

const SSH: LocalService = {
  proto: "tcp",
  name: "ssh",
  host: "127.0.0.1",
  port: 22,
  users: [],
  strict: false,
};
const WEB: LocalService = {
  proto: "tcp",
  name: "web",
  host: "intranet.local",
  port: 8080,
  users: ["alice", "bob"],
  strict: true,
};
const SSH_PORT: PortMapping = {
  ip: "127.0.0.1",
  proto: "tcp",
  port: 2222,
  target: { service: "ssh", user: "root", endpoint: "server" },
};

/** A store in a fresh temp dir, removed with the store. */
function openTemp(): { store: AgentStore; path: string; [Symbol.dispose](): void } {
  const dir = Deno.makeTempDirSync({ prefix: "ztm-agent-store-" });
  const path = join(dir, "ztm.db");
  const store = AgentStore.open(path);
  return {
    store,
    path,
    [Symbol.dispose]() {
      try {
        store.close();
      } catch {
        // already closed by the test
      }
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Runs `fn` and returns the error it throws, which must be a `cls`. */
function assertThrows<E extends Error>(fn: () => unknown, cls: new (...args: never[]) => E): E {
  try {
    fn();
  } catch (err) {
    if (err instanceof cls) return err;
    throw err;
  }
  throw new Error(`Expected ${cls.name} to be thrown`);
}

function modeOf(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

Deno.test("store creates the database and its -wal and -shm files with mode 0600", () => {
  const oldMask = Deno.umask(0o022);
  try {
    using t = openTemp();
    t.store.addMesh(meshConfig("home"));
    for (const suffix of ["", "-wal", "-shm"]) {
      assertEquals(modeOf(t.path + suffix).toString(8), "600", `mode of ztm.db${suffix}`);
    }
  } finally {
    Deno.umask(oldMask);
  }
});

Deno.test("store tightens an existing database file to mode 0600 on open", () => {
  using t = openTemp();
  t.store.close();
  Deno.chmodSync(t.path, 0o644);
  const again = AgentStore.open(t.path);
  again.close();
  assertEquals(modeOf(t.path).toString(8), "600");
});

Deno.test("store keeps its file in WAL mode at the current schema version", () => {
  using t = openTemp();
  t.store.close();
  const db = new DatabaseSync(t.path);
  try {
    assertEquals(db.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
    assertEquals(db.prepare("PRAGMA user_version").get()?.user_version, 9);
  } finally {
    db.close();
  }
});

Deno.test("store adds, reads, lists and removes meshes", () => {
  using t = openTemp();
  const work = meshConfig("work");
  const home = meshConfig("home");
  const added = t.store.addMesh(work, new Date("2030-01-02T03:04:05.000Z"));
  t.store.addMesh(home);
  assertEquals(added, { ...work, joinedAt: "2030-01-02T03:04:05.000Z", listedHubs: [] });
  assertEquals(t.store.mesh("work"), added);
  // Hubs learnt from hub lists are kept with the mesh.
  t.store.setListedHubs("work", [["hub2.example.net:8888"], ["hub3.example.net:8888"]]);
  assertEquals(t.store.mesh("work")?.listedHubs, [
    ["hub2.example.net:8888"],
    ["hub3.example.net:8888"],
  ]);
  assertEquals(t.store.mesh("home")?.listedHubs, []);
  assertEquals(t.store.mesh("nowhere"), undefined);
  assertEquals(t.store.listMeshes().map((m) => m.name), ["home", "work"]);
  t.store.removeMesh("work");
  assertEquals(t.store.listMeshes().map((m) => m.name), ["home"]);
});

Deno.test("store refuses to add a joined mesh again with 409 mesh_exists and keeps the first", () => {
  using t = openTemp();
  const first = t.store.addMesh(meshConfig("home"));
  const err = assertThrows(() => t.store.addMesh(meshConfig("home")), Conflict);
  assertEquals(err.code, "mesh_exists");
  assertEquals(err.message, 'Mesh "home" is already joined');
  assertEquals(t.store.listMeshes(), [first]);
});

Deno.test("store answers 404 unknown_mesh when removing a mesh that is not joined", () => {
  using t = openTemp();
  const err = assertThrows(() => t.store.removeMesh("nowhere"), NotFound);
  assertEquals(err.code, "unknown_mesh");
  assertEquals(err.message, 'Unknown mesh "nowhere"');
});

Deno.test("store creates a service, replaces it under the same key, and deletes it", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  assertEquals(t.store.putService("home", WEB), true);
  assertEquals(t.store.putService("home", SSH), true);
  assertEquals(t.store.services("home"), [SSH, WEB]);
  const moved = { ...SSH, host: "10.0.0.5", port: 2200, users: ["*"] };
  assertEquals(t.store.putService("home", moved), false);
  assertEquals(t.store.services("home"), [moved, WEB]);
  assertEquals(t.store.deleteService("home", "tcp", "ssh"), moved);
  assertEquals(t.store.services("home"), [WEB]);
});

Deno.test("store answers 404 for a service of an unknown mesh or an unknown service", () => {
  using t = openTemp();
  const noMesh = assertThrows(() => t.store.putService("nowhere", SSH), NotFound);
  assertEquals(noMesh.code, "unknown_mesh");
  t.store.addMesh(meshConfig("home"));
  const noService = assertThrows(() => t.store.deleteService("home", "tcp", "ssh"), NotFound);
  assertEquals(noService.code, "unknown_service");
  assertEquals(noService.message, 'Unknown service "tcp/ssh" in mesh "home"');
  assertEquals(t.store.services("nowhere"), []);
});

Deno.test("store keeps services of different meshes apart", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  t.store.addMesh(meshConfig("work"));
  t.store.putService("home", SSH);
  t.store.putService("work", { ...SSH, port: 2022 });
  assertEquals(t.store.services("home"), [SSH]);
  assertEquals(t.store.services("work"), [{ ...SSH, port: 2022 }]);
  assertThrows(() => t.store.deleteService("work", "tcp", "web"), NotFound);
  assertEquals(t.store.services("home"), [SSH]);
});

Deno.test("store adds, reads and deletes port mappings", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  const v6: PortMapping = { ip: "::1", proto: "tcp", port: 80, target: { service: "web" } };
  t.store.addPort("home", SSH_PORT);
  t.store.addPort("home", v6);
  assertEquals(t.store.ports("home"), [SSH_PORT, v6]);
  assertEquals(t.store.port("home", "::1", "tcp", 80), v6);
  assertEquals(t.store.deletePort("home", "127.0.0.1", "tcp", 2222), SSH_PORT);
  assertEquals(t.store.ports("home"), [v6]);
  assertEquals(t.store.port("home", "127.0.0.1", "tcp", 2222), undefined);
});

Deno.test("store refuses a second mapping of one ip/proto/port with 409, also from another mesh", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  t.store.addMesh(meshConfig("work"));
  t.store.addPort("home", SSH_PORT);
  const again = assertThrows(() => t.store.addPort("home", SSH_PORT), Conflict);
  assertEquals(again.code, "port_mapped");
  assertEquals(again.message, "Port 127.0.0.1/tcp/2222 is already mapped");
  const other = assertThrows(
    () => t.store.addPort("work", { ...SSH_PORT, target: { service: "x" } }),
    Conflict,
  );
  assertEquals(other.message, 'Port 127.0.0.1/tcp/2222 is already mapped by mesh "home"');
  assertEquals(t.store.ports("home"), [SSH_PORT]);
  assertEquals(t.store.ports("work"), []);
});

Deno.test("store answers 404 for a port of an unknown mesh, an unknown port, or another mesh's port", () => {
  using t = openTemp();
  assertEquals(
    assertThrows(() => t.store.addPort("nowhere", SSH_PORT), NotFound).code,
    "unknown_mesh",
  );
  t.store.addMesh(meshConfig("home"));
  t.store.addMesh(meshConfig("work"));
  const unknown = assertThrows(() => t.store.deletePort("home", "127.0.0.1", "tcp", 1), NotFound);
  assertEquals(unknown.code, "unknown_port");
  t.store.addPort("home", SSH_PORT);
  assertThrows(() => t.store.deletePort("work", "127.0.0.1", "tcp", 2222), NotFound);
  assertEquals(t.store.port("work", "127.0.0.1", "tcp", 2222), undefined);
  assertEquals(t.store.ports("home"), [SSH_PORT]);
});

Deno.test("removing a mesh removes its services and port mappings and nothing of other meshes", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  t.store.addMesh(meshConfig("work"));
  t.store.putService("home", SSH);
  t.store.putService("work", WEB);
  t.store.addPort("home", SSH_PORT);
  t.store.addPort("work", { ...SSH_PORT, port: 2223 });
  t.store.removeMesh("home");
  assertEquals(t.store.services("home"), []);
  assertEquals(t.store.ports("home"), []);
  assertEquals(t.store.services("work"), [WEB]);
  assertEquals(t.store.ports("work"), [{ ...SSH_PORT, port: 2223 }]);
  // The address is free again once its mesh is gone.
  t.store.addPort("work", SSH_PORT);
});

Deno.test("store keeps meshes, services and ports across close and reopen", () => {
  using t = openTemp();
  const mesh = t.store.addMesh(meshConfig("home"));
  t.store.putService("home", WEB);
  t.store.addPort("home", SSH_PORT);
  t.store.close();
  const again = AgentStore.open(t.path);
  try {
    assertEquals(again.listMeshes(), [mesh]);
    assertEquals(again.services("home"), [WEB]);
    assertEquals(again.ports("home"), [SSH_PORT]);
  } finally {
    again.close();
  }
});

Deno.test("store refuses a database written by a newer schema and leaves it untouched", () => {
  using t = openTemp();
  t.store.close();
  const db = new DatabaseSync(t.path);
  db.exec("PRAGMA user_version = 99");
  db.close();
  const err = assertThrows(() => AgentStore.open(t.path), Error);
  assert(err.message.includes("newer than this ztm"), err.message);
  const check = new DatabaseSync(t.path);
  assertEquals(check.prepare("PRAGMA user_version").get()?.user_version, 99);
  check.close();
});

Deno.test("store keeps a mapping's pool user fixed at first use, and never rewrites a remade mapping", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("home"));
  const open: PortMapping = {
    ip: "127.0.0.1",
    proto: "tcp",
    port: 3333,
    target: { service: "db" },
  };
  t.store.addPort("home", open);
  assertEquals(t.store.fixPortUser("home", open, "bob"), true);
  // Fixed once: a later report (another user) changes nothing.
  assertEquals(t.store.fixPortUser("home", open, "mallory"), false);
  t.store.close();
  const again = AgentStore.open(t.path);
  try {
    assertEquals(again.port("home", "127.0.0.1", "tcp", 3333)?.target, {
      service: "db",
      user: "bob",
    });
    // A mapping deleted and made again for another service is not the one that was used.
    again.deletePort("home", "127.0.0.1", "tcp", 3333);
    again.addPort("home", { ...open, target: { service: "web" } });
    assertEquals(again.fixPortUser("home", open, "bob"), false);
    assertEquals(again.port("home", "127.0.0.1", "tcp", 3333)?.target, { service: "web" });
    assertEquals(again.fixPortUser("home", { ...open, port: 4444 }, "bob"), false);
  } finally {
    again.close();
  }
});

Deno.test("store keeps a mesh's proxy across reopening and forgets it with the mesh", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("work"));
  assertEquals(t.store.proxy("work"), null);
  t.store.setProxy("work", { listen: "127.0.0.1:1080" });
  t.store.setProxy("work", { listen: "127.0.0.1:1081" });
  t.store.close();
  const again = AgentStore.open(t.path);
  try {
    assertEquals(again.proxy("work"), { listen: "127.0.0.1:1081" });
    assert(again.removeProxy("work"));
    assert(!again.removeProxy("work"));
    assertEquals(again.proxy("work"), null);
    again.setProxy("work", { listen: "127.0.0.1:1080" });
    again.removeMesh("work");
    assertEquals(again.proxy("work"), null);
    let threw: unknown;
    try {
      again.setProxy("gone", { listen: "127.0.0.1:1080" });
    } catch (err) {
      threw = err;
    }
    assert(threw instanceof NotFound);
  } finally {
    again.close();
  }
});

Deno.test("store keeps a mesh's exit rules across reopening and forgets them with the mesh", () => {
  using t = openTemp();
  t.store.addMesh(meshConfig("work"));
  assertEquals(t.store.exit("work"), null);
  const rules = [{ destinations: ["10.1.0.0/16"], ports: ["443"], users: ["alice"] }];
  t.store.setExit("work", [{ destinations: ["10.0.0.0/8"] }]);
  t.store.setExit("work", rules);
  t.store.close();
  const again = AgentStore.open(t.path);
  try {
    assertEquals(again.exit("work"), rules);
    assert(again.removeExit("work"));
    assert(!again.removeExit("work"));
    assertEquals(again.exit("work"), null);
    again.setExit("work", rules);
    again.removeMesh("work");
    assertEquals(again.exit("work"), null);
    let threw: unknown;
    try {
      again.setExit("gone", rules);
    } catch (err) {
      threw = err;
    }
    assert(threw instanceof NotFound);
  } finally {
    again.close();
  }
});
