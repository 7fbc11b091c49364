import assert from "node:assert/strict";
import { join } from "node:path";
import { ServiceUnavailable } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import type { MeshService } from "@ztm/shared/protocol";
import { type Caller, EndpointOps, UNVERIFIED_SAMPLES } from "./endpoint_ops.ts";
import type { LocalService, MeshRuntime, PortMapping } from "./runtime.ts";
import { AgentStore } from "./store.ts";
import { memberConfig } from "../tests/fixtures/member_config.ts";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";

const ca = await newCa();
const alice = await newLeaf(ca, { name: "alice", role: "peer" });

const LOCAL: Caller = { user: "alice", via: "local", remote: false };
const remote = (user: string): Caller => ({ user, via: "ep-" + "9".repeat(32), remote: true });

/** What the runtime was handed; `offered` is what the hub lists (or an error to throw). */
class RecordingRuntime {
  published: LocalService[][] = [];
  opened: PortMapping[] = [];
  failOpen: Error | undefined;
  offered: MeshService[] | Error = [];
  setServices(services: LocalService[]) {
    this.published.push(services);
  }
  openPort(m: PortMapping) {
    if (this.failOpen) return Promise.reject(this.failOpen);
    this.opened.push(m);
    return Promise.resolve();
  }
  closePort() {
    return Promise.resolve();
  }
  services() {
    const o = this.offered;
    return o instanceof Error ? Promise.reject(o) : Promise.resolve({
      items: o,
      total: o.length,
      offset: 0,
      limit: 500,
    });
  }
  tunnelStates(): never {
    throw new Error("not running");
  }
}

/** EndpointOps over a real store in a temp folder with mesh "home" joined by alice. */
function setUp() {
  const dir = Deno.makeTempDirSync();
  const store = AgentStore.open(join(dir, "agent.db"));
  store.addMesh(memberConfig(ca, alice, ["hub:8888"]));
  const runtime = new RecordingRuntime();
  const lines: Record<string, unknown>[] = [];
  const ops = new EndpointOps({
    store,
    runtimeOf: () => runtime as unknown as MeshRuntime,
    userOf: () => "alice",
    serialized: (_key, task) => task(),
    log: new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) }),
  });
  const run = async (caller: Caller, method: string, path: string, body = "") => {
    const res = await ops.run("home", caller, method, path, body);
    return { status: res.status, body: await res.json() };
  };
  return {
    store,
    runtime,
    ops,
    lines,
    run,
    [Symbol.dispose]() {
      store.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

const SSH_BODY = JSON.stringify({ host: "127.0.0.1", port: 22, users: ["bob"] });

Deno.test("a remote request is refused when remote management is off, and the refusal is audited", async () => {
  using t = setUp();
  t.store.setPolicy("home", { remoteManagement: false, targets: ["*"], listen: ["*"] });
  const res = await t.run(remote("alice"), "POST", "services/tcp/ssh", SSH_BODY);
  assert.equal(res.status, 403);
  assert.equal(res.body.error.code, "remote_management_off");
  assert.deepEqual(t.runtime.published, []);
  assert.deepEqual(t.store.services("home"), []);
  // Reads are refused too, and audited as every remote request is.
  assert.equal((await t.run(remote("alice"), "GET", "services")).status, 403);
  const audit = t.store.audit("home", 0, 10).items;
  assert.deepEqual(audit.map((a) => [a.method, a.path, a.status, a.via]), [
    ["GET", "services", 403, "ep-" + "9".repeat(32)],
    ["POST", "services/tcp/ssh", 403, "ep-" + "9".repeat(32)],
  ]);
  assert.match(audit[1].outcome, /Remote management is switched off/);
  assert.ok(t.lines.some((l) => l.msg === "remote request refused" && l.user === "alice"));
});

Deno.test("only the endpoint's own user and root manage it remotely", async () => {
  using t = setUp();
  const refused = await t.run(remote("mallory"), "POST", "services/tcp/ssh", SSH_BODY);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, "not_allowed");
  assert.match(
    refused.body.error.message,
    /^User "mallory" may not manage endpoint "laptop"; only its user "alice" and root may$/,
  );
  assert.equal((await t.run(remote("root"), "POST", "services/tcp/ssh", SSH_BODY)).status, 201);
  assert.equal((await t.run(remote("alice"), "DELETE", "services/tcp/ssh")).status, 200);
  assert.deepEqual(t.runtime.published.map((p) => p.length), [1, 0]);
});

Deno.test("remote callers may point services and open ports only where the policy allows", async () => {
  using t = setUp();
  t.store.setPolicy("home", {
    remoteManagement: true,
    targets: ["127.0.0.1:22"],
    listen: ["127.0.0.1"],
  });
  const far = await t.run(
    remote("alice"),
    "POST",
    "services/tcp/db",
    JSON.stringify({
      host: "10.0.0.5",
      port: 5432,
    }),
  );
  assert.equal(far.status, 403);
  assert.equal(far.body.error.code, "target_not_allowed");
  assert.match(far.body.error.message, /10\.0\.0\.5:5432 \(policy targets: 127\.0\.0\.1:22\)/);
  // The local user is not bound by the policy.
  assert.equal(
    (await t.run(
      LOCAL,
      "POST",
      "services/tcp/db",
      JSON.stringify({ host: "10.0.0.5", port: 5432 }),
    ))
      .status,
    201,
  );
  assert.equal((await t.run(remote("alice"), "POST", "services/tcp/ssh", SSH_BODY)).status, 201);

  const target = JSON.stringify({ target: { service: "ssh", user: "bob" } });
  const wide = await t.run(remote("alice"), "POST", "ports/0.0.0.0/tcp/2222", target);
  assert.equal(wide.status, 403);
  assert.equal(wide.body.error.code, "listen_not_allowed");
  assert.equal(t.runtime.opened.length, 0);
  assert.equal(
    (await t.run(remote("alice"), "POST", "ports/127.0.0.1/tcp/2222", target)).status,
    201,
  );
  assert.deepEqual(t.runtime.opened.map((m) => m.port), [2222]);
});

Deno.test("a port the runtime cannot open is not kept, and answers the listen error", async () => {
  using t = setUp();
  t.runtime.failOpen = new Deno.errors.AddrInUse("in use");
  const body = JSON.stringify({ target: { service: "ssh", user: "bob" } });
  const res = await t.run(LOCAL, "POST", "ports/127.0.0.1/tcp/2222", body);
  assert.equal(res.status, 409);
  assert.equal(res.body.error.code, "port_in_use");
  assert.deepEqual(t.store.ports("home"), []);
  const audit = t.store.audit("home", 0, 10).items;
  assert.equal(audit[0].status, 409);
});

Deno.test("a mapping without a user is fixed to the only user offering the service", async () => {
  using t = setUp();
  const svc = (user: string, endpoint: string): MeshService => ({
    proto: "tcp",
    name: "web",
    user,
    providers: [{ endpoint, name: endpoint, online: true, users: ["*"] }],
  });
  const map = (port: number, target: PortMapping["target"]) =>
    t.run(LOCAL, "POST", `ports/127.0.0.1/tcp/${port}`, JSON.stringify({ target }));
  t.runtime.offered = [svc("bob", "ep-b")];
  const one = await map(8080, { service: "web" });
  assert.equal(one.status, 201);
  assert.deepEqual(t.runtime.opened[0].target, { service: "web", user: "bob" });

  t.runtime.offered = [svc("bob", "ep-b"), svc("carol", "ep-c")];
  const two = await map(8081, { service: "web" });
  assert.equal(two.status, 409);
  assert.equal(two.body.error.code, "ambiguous_service");
  assert.match(two.body.error.message, /\(bob, carol\); name one in target\.user/);
  // Naming the endpoint picks among them.
  const pinned = await map(8082, { service: "web", endpoint: "ep-c" });
  assert.equal(pinned.status, 201);
  assert.equal(t.runtime.opened[1].target.user, "carol");

  // The hub cannot be asked now: the mapping fixes its user at first use.
  t.runtime.offered = new ServiceUnavailable("hub_unreachable", "Not connected");
  const later = await map(8083, { service: "web" });
  assert.equal(later.status, 201);
  assert.deepEqual(t.runtime.opened[2].target, { service: "web" });
});

Deno.test("unverified remote requests are counted and the newest sampled, shown with the log", async () => {
  using t = setUp();
  for (let i = 0; i < UNVERIFIED_SAMPLES + 5; i++) {
    t.ops.noteUnverified("home", {
      user: "?",
      via: `ep-${i}`,
      method: "POST",
      path: "services/tcp/x",
      status: 401,
      outcome: "x".repeat(600),
      detail: "",
    });
  }
  const log = await t.run(LOCAL, "GET", "log?limit=5");
  assert.equal(log.status, 200);
  assert.equal(log.body.unverified.count, UNVERIFIED_SAMPLES + 5);
  assert.equal(log.body.unverified.recent.length, UNVERIFIED_SAMPLES);
  assert.equal(log.body.unverified.recent[0].via, `ep-${UNVERIFIED_SAMPLES + 4}`);
  assert.equal(log.body.unverified.recent[0].outcome.length, 500);
  assert.equal(log.body.limit, 5);
  // They never reach the audit log.
  assert.deepEqual(log.body.items, []);
});
