import { TunnelStates } from "./tunnel_state.ts";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import {
  errorBody,
  MethodNotAllowed,
  NotFound,
  ServiceUnavailable,
  ZtmError,
} from "@ztm/shared/errors";
import { type App, json, serveHttp } from "@ztm/shared/http";
import { Logger } from "@ztm/shared/log";
import {
  ENDPOINT_ID_PATTERN,
  type EndpointRecord,
  type MeshService,
  type Page,
} from "@ztm/shared/protocol";
import { AGENT_PATHS, agentPath, ENDPOINT_ROUTES } from "@ztm/shared/agent_api";
import { ApiAccess } from "./access.ts";
import { createAgentApp, MAX_BODY_BYTES } from "./api.ts";
import type { SignedRequest } from "@ztm/shared/signed_request";

const API_TOKEN = "0123456789abcdef0123456789abcdef";
import { AgentStore } from "./store.ts";
import type {
  LocalService,
  ManageHandler,
  MeshConfig,
  MeshRuntime,
  MeshStatus,
  PageQuery,
  PortMapping,
} from "./runtime.ts";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const ca = await newCa();
const root = await newLeaf(ca);
/** A line from the middle of root's key PEM: no response may contain it. */
const KEY_LINE = root.privateKey.split("\n")[1];

function joinBody(overrides: Record<string, unknown> = {}, agent: Record<string, unknown> = {}) {
  return {
    ca: ca.pem,
    agent: { ...root, ...agent },
    bootstraps: ["hub.example.com:8888"],
    ...overrides,
  };
}

// ---- a mesh runtime that records what the API hands it ----

const REMOTE: EndpointRecord = {
  id: "ep-remote",
  name: "laptop-2",
  user: "alice",
  online: true,
  version: "test",
  address: "192.0.2.7:40000",
  services: [],
  since: "2030-01-01T00:00:00.000Z",
};

function portKey(m: PortMapping): string {
  return `${m.ip}/${m.proto}/${m.port}`;
}

/** Records setServices/openPort/closePort; openPort binds a real listener. */
class RecordingRuntime implements MeshRuntime {
  readonly name: string;
  readonly config: MeshConfig;
  readonly initial: { services: LocalService[]; ports: PortMapping[] };
  readonly published: LocalService[][] = [];
  readonly queries: PageQuery[] = [];
  readonly opened: PortMapping[] = [];
  readonly closed: PortMapping[] = [];
  isClosed = false;
  #listeners = new Map<string, Deno.Listener>();

  constructor(config: MeshConfig, state: { services: LocalService[]; ports: PortMapping[] }) {
    this.name = config.name;
    this.config = config;
    this.initial = state;
  }

  #self(): EndpointRecord {
    return {
      ...REMOTE,
      id: this.config.endpointId,
      name: this.config.endpointName,
      user: "root",
      address: "127.0.0.1:40001",
    };
  }

  status(): MeshStatus {
    return {
      name: this.name,
      endpoint: { id: this.config.endpointId, name: this.config.endpointName },
      user: "root",
      connected: true,
      hub: this.config.bootstraps[0],
      lastError: null,
      since: "2030-01-01T00:00:00.000Z",
    };
  }

  endpoints(query: PageQuery): Promise<Page<EndpointRecord>> {
    this.queries.push(query);
    const all = [this.#self(), REMOTE].filter((e) => !query.q || e.name.includes(query.q));
    const items = all.slice(query.offset, query.offset + query.limit);
    return Promise.resolve({ items, total: all.length, offset: query.offset, limit: query.limit });
  }

  endpoint(idOrName: string): Promise<EndpointRecord> {
    const found = [this.#self(), REMOTE].find((e) => e.id === idOrName || e.name === idOrName);
    if (found) return Promise.resolve(found);
    return Promise.reject(new NotFound("unknown_endpoint", `Unknown endpoint "${idOrName}"`));
  }

  services(query: PageQuery): Promise<Page<MeshService>> {
    this.queries.push(query);
    return Promise.resolve({ items: [], total: 0, offset: query.offset, limit: query.limit });
  }

  setServices(services: LocalService[]): void {
    this.published.push(services);
  }

  openPort(mapping: PortMapping): Promise<void> {
    try {
      this.#listeners.set(
        portKey(mapping),
        Deno.listen({ hostname: mapping.ip, port: mapping.port }),
      );
    } catch (err) {
      return Promise.reject(err);
    }
    this.opened.push(mapping);
    return Promise.resolve();
  }

  closePort(mapping: PortMapping): Promise<void> {
    this.#listeners.get(portKey(mapping))?.close();
    this.#listeners.delete(portKey(mapping));
    this.closed.push(mapping);
    return Promise.resolve();
  }

  /** Signed requests sent to other endpoints, with the answer the test chose. */
  readonly sent: SignedRequest[] = [];
  manageAnswer = {
    status: 403,
    body: JSON.stringify({ error: { code: "not_allowed", message: "no" } }),
  };

  manage(_targetId: string, request: SignedRequest): Promise<{ status: number; body: string }> {
    this.sent.push(request);
    return Promise.resolve(this.manageAnswer);
  }

  revoked(): Set<string> {
    return new Set();
  }

  readonly states = new TunnelStates();
  tunnelStates(): TunnelStates {
    return this.states;
  }

  setManageHandler(_handler: ManageHandler): void {}

  close(): Promise<void> {
    for (const listener of this.#listeners.values()) listener.close();
    this.#listeners.clear();
    this.isClosed = true;
    return Promise.resolve();
  }
}

/** An API row without its live `state` (and a creation's `warning`). */
function withoutState(row: Json): Json {
  const { state: _state, warning: _warning, ...rest } = row;
  return rest;
}

// ---- the agent under test ----

interface Reply {
  status: number;
  body: Json;
  headers: Headers;
}

/** A real store in a temp dir, the app over it, and the runtimes it started. */
class TestAgent implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: "ztm-agent-api-" });
  readonly store = AgentStore.open(join(this.dir, "ztm.db"));
  readonly runtimes = new Map<string, MeshRuntime>();
  readonly started: RecordingRuntime[] = [];
  readonly logs: Json[] = [];
  readonly log = new Logger("agent", { sink: (line) => this.logs.push(JSON.parse(line)) });
  /** When set, the next mesh start fails with it. */
  startError: Error | undefined;
  readonly app: App = createAgentApp({
    store: this.store,
    access: new ApiAccess(API_TOKEN),
    runtimes: this.runtimes,
    log: this.log,
    endpointName: "test-box",
    startMesh: (config, state) => {
      if (this.startError) return Promise.reject(this.startError);
      const runtime = new RecordingRuntime(config, state);
      this.started.push(runtime);
      return Promise.resolve(runtime);
    },
  });

  runtime(mesh: string): RecordingRuntime {
    const runtime = this.runtimes.get(mesh);
    if (!(runtime instanceof RecordingRuntime)) throw new Error(`Mesh "${mesh}" is not running`);
    return runtime;
  }

  /**
   * Sends one request to the app and renders a thrown `ZtmError` as
   * `serveHttp` does; anything else fails the test. Checks no key leaks.
   */
  async call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Reply> {
    const init: RequestInit = {
      method,
      headers: { host: "127.0.0.1:7777", authorization: `Bearer ${API_TOKEN}`, ...headers },
    };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    let res: Response;
    try {
      res = await this.app(new Request(`http://127.0.0.1:7777${path}`, init));
    } catch (err) {
      if (!(err instanceof ZtmError)) throw err;
      const rendered = errorBody(err);
      const extra: HeadersInit = err instanceof MethodNotAllowed
        ? { allow: err.allow.join(", ") }
        : {};
      res = json(rendered.body, rendered.status, extra);
    }
    const text = await res.text();
    assert(!text.includes("PRIVATE KEY") && !text.includes(KEY_LINE), `key in ${text}`);
    return { status: res.status, body: JSON.parse(text), headers: res.headers };
  }

  /** Joins `mesh` with root's files and returns the summary. */
  async join(mesh = "home"): Promise<Json> {
    const reply = await this.call("POST", `/api/meshes/${mesh}`, joinBody());
    assertEquals(reply.status, 201, JSON.stringify(reply.body));
    return reply.body;
  }

  /** Everything stored, as one comparable value. */
  snapshot(): string {
    return JSON.stringify(
      this.store.listMeshes().map((m) => ({
        mesh: m,
        services: this.store.services(m.name),
        ports: this.store.ports(m.name),
      })),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const runtime of this.runtimes.values()) await runtime.close();
    this.store.close();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

function assertError(reply: Reply, status: number, code: string, message?: RegExp): void {
  assertEquals(
    { status: reply.status, code: reply.body?.error?.code },
    { status, code },
    JSON.stringify(reply.body),
  );
  assertEquals(typeof reply.body.error.message, "string");
  if (message) assert(message.test(reply.body.error.message), reply.body.error.message);
}

/** A TCP port that was free a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function canConnect(port: number, hostname = "127.0.0.1"): Promise<boolean> {
  try {
    (await Deno.connect({ hostname, port })).close();
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionRefused) return false;
    throw err;
  }
}

const SERVICES = "/api/meshes/home/endpoints/test-box/services";
const PORTS = "/api/meshes/home/endpoints/test-box/ports";

// ---- meshes ----

Deno.test("joining a mesh stores it, starts its runtime and answers 201 without the private key", async () => {
  await using agent = new TestAgent();
  const reply = await agent.call("POST", "/api/meshes/home", joinBody({}, { name: "laptop" }));
  assertEquals(reply.status, 201);
  const stored = agent.store.mesh("home")!;
  assertEquals(stored.privateKey, root.privateKey);
  assertEquals(reply.body, {
    name: "home",
    endpoint: { id: stored.endpointId, name: "laptop" },
    user: "root",
    bootstraps: ["hub.example.com:8888"],
    joinedAt: stored.joinedAt,
    certificate: reply.body.certificate,
    caCertificate: {
      notAfter: ca.certificate.notAfter.toISOString(),
      daysLeft: reply.body.caCertificate.daysLeft,
      warning: null,
    },
    canInvite: false,
    status: {
      connected: true,
      hub: "hub.example.com:8888",
      lastError: null,
      since: "2030-01-01T00:00:00.000Z",
    },
  });
  assert(ENDPOINT_ID_PATTERN.test(stored.endpointId));
  assert(!("privateKey" in reply.body) && !("ca" in reply.body));
  assertEquals(agent.started.length, 1);
  assertEquals(agent.runtime("home").config, {
    name: "home",
    ca: ca.pem,
    certificate: root.certificate,
    privateKey: root.privateKey,
    bootstraps: ["hub.example.com:8888"],
    endpointId: stored.endpointId,
    endpointSeed: stored.endpointSeed,
    endpointName: "laptop",
  });
  assertEquals(agent.runtime("home").initial, { services: [], ports: [] });
  const logged = JSON.stringify(agent.logs);
  assert(logged.includes('"mesh joined"') && !logged.includes(KEY_LINE));
});

Deno.test("a join without agent.name uses the agent's endpoint name", async () => {
  await using agent = new TestAgent();
  const summary = await agent.join();
  assertEquals(summary.endpoint.name, "test-box");
});

Deno.test("the mesh list and a mesh's details show endpoint, user, hubs and link status", async () => {
  await using agent = new TestAgent();
  assertEquals((await agent.call("GET", "/api/meshes")).body, []);
  const home = await agent.join("home");
  const work = await agent.join("work");
  const list = await agent.call("GET", "/api/meshes");
  assertEquals(list.status, 200);
  assertEquals(list.body, [home, work]);
  const one = await agent.call("GET", "/api/meshes/work");
  assertEquals(one.body, work);
  assertEquals(one.body.certificate.notAfter.slice(0, 2), "20");
  assert(/^[0-9a-f]+$/.test(one.body.certificate.serial));
});

Deno.test("joining a joined mesh answers 409 mesh_exists and keeps the first join", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const before = agent.snapshot();
  const again = await agent.call("POST", "/api/meshes/home", joinBody());
  assertError(again, 409, "mesh_exists", /Mesh "home" is already joined/);
  assertEquals(agent.snapshot(), before);
  assertEquals(agent.started.length, 1);
});

Deno.test("concurrent joins of one mesh name store and start it once", async () => {
  await using agent = new TestAgent();
  const replies = await Promise.all([
    agent.call("POST", "/api/meshes/home", joinBody()),
    agent.call("POST", "/api/meshes/home", joinBody()),
  ]);
  assertEquals(replies.map((r) => r.status).sort(), [201, 409]);
  assertEquals(agent.started.length, 1);
  assertEquals(agent.store.listMeshes().length, 1);
});

Deno.test("a join with bad files answers 400 naming the problem and stores nothing", async (t) => {
  await using agent = new TestAgent();
  const otherCa = await newCa();
  const cases: [string, string, unknown, string, RegExp][] = [
    ["garbage CA", "home", joinBody({ ca: "garbage" }), "bad_ca", /not a PEM/],
    [
      "certificate from another CA",
      "home",
      joinBody({}, await newLeaf(otherCa)),
      "certificate_not_from_ca",
      /not issued by the CA/,
    ],
    [
      "key that does not match the certificate",
      "home",
      joinBody({}, { privateKey: (await newLeaf(ca)).privateKey }),
      "key_mismatch",
      /does not belong/,
    ],
    [
      "expired certificate",
      "home",
      joinBody({}, await newLeaf(ca, { now: new Date(Date.now() - 3 * 86_400_000), days: 1 })),
      "certificate_expired",
      /expired at/,
    ],
    [
      "hub-role certificate",
      "home",
      joinBody({}, await newLeaf(ca, { name: "hub.example.com", role: "server" })),
      "wrong_role",
      /user \(clientAuth\) certificate/,
    ],
    ["no hub address", "home", joinBody({ bootstraps: [] }), "bad_bootstraps", /1 to 16/],
    [
      "hub address without port",
      "home",
      joinBody({ bootstraps: ["hub"] }),
      "bad_bootstraps",
      /no port/,
    ],
    [
      "hub address no URL can hold",
      "home",
      joinBody({ bootstraps: ["256.1.1.1:1"] }),
      "bad_bootstraps",
      /256\.1\.1\.1/,
    ],
    ["bad mesh name", "bad%20name", joinBody(), "bad_mesh_name", /"bad name"/],
    ["body that is not an object", "home", [], "bad_json", /JSON object/],
  ];
  for (const [what, mesh, body, code, message] of cases) {
    await t.step(what, async () => {
      const reply = await agent.call("POST", `/api/meshes/${mesh}`, body);
      assertError(reply, 400, code, message);
      assertEquals(agent.store.listMeshes(), []);
      assertEquals(agent.started.length, 0);
    });
  }
});

Deno.test("a join whose runtime cannot start answers that error and stores nothing", async () => {
  await using agent = new TestAgent();
  agent.startError = new ServiceUnavailable("hub_unreachable", "No hub answered");
  const reply = await agent.call("POST", "/api/meshes/home", joinBody());
  assertError(reply, 503, "hub_unreachable", /No hub answered/);
  assertEquals(agent.store.listMeshes(), []);
  assertEquals(agent.runtimes.size, 0);
  agent.startError = undefined;
  await agent.join();
});

Deno.test("leaving a mesh closes its runtime and forgets its services and ports", async () => {
  await using agent = new TestAgent();
  const summary = await agent.join();
  await agent.join("work");
  const runtime = agent.runtime("home");
  const port = freePort();
  assertEquals(
    (await agent.call("POST", `${SERVICES}/tcp/ssh`, { host: "::1", port: 22 })).status,
    201,
  );
  assertEquals(
    (await agent.call("POST", `${PORTS}/127.0.0.1/tcp/${port}`, { target: { service: "ssh" } }))
      .status,
    201,
  );
  assert(await canConnect(port));
  const reply = await agent.call("DELETE", "/api/meshes/home");
  assertEquals(reply.status, 200);
  assertEquals(reply.body, { ...summary, status: null });
  assert(runtime.isClosed);
  assert(!(await canConnect(port)));
  assertEquals(agent.runtimes.has("home"), false);
  assertEquals(agent.store.mesh("home"), undefined);
  assertEquals(agent.store.services("home"), []);
  assertEquals(agent.store.ports("home"), []);
  assertEquals(agent.store.listMeshes().map((m) => m.name), ["work"]);
  assertError(await agent.call("DELETE", "/api/meshes/home"), 404, "unknown_mesh");
});

Deno.test("a joined mesh that is not running answers 503 to changes but still shows and leaves", async () => {
  await using agent = new TestAgent();
  await agent.join();
  agent.runtimes.delete("home"); // as when the mesh failed to resume at agent start
  const before = agent.snapshot();
  const write = await agent.call("POST", `${SERVICES}/tcp/ssh`, { host: "localhost", port: 22 });
  assertError(write, 503, "mesh_not_running", /Mesh "home" is joined but not running/);
  assertError(await agent.call("GET", "/api/meshes/home/endpoints"), 503, "mesh_not_running");
  assertEquals(agent.snapshot(), before);
  assertEquals((await agent.call("GET", SERVICES)).body, []);
  assertEquals((await agent.call("GET", "/api/meshes/home")).body.status, null);
  assertEquals((await agent.call("DELETE", "/api/meshes/home")).status, 200);
  assertEquals(agent.store.listMeshes(), []);
});

Deno.test("every mesh route answers 404 unknown_mesh naming an unknown mesh", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const ep = "/api/meshes/nowhere/endpoints/test-box";
  const routes: [string, string, unknown?][] = [
    ["GET", "/api/meshes/nowhere"],
    ["DELETE", "/api/meshes/nowhere"],
    ["GET", "/api/meshes/nowhere/endpoints"],
    ["GET", ep],
    ["GET", "/api/meshes/nowhere/services"],
    ["GET", `${ep}/services`],
    ["POST", `${ep}/services/tcp/ssh`, { host: "localhost", port: 22 }],
    ["DELETE", `${ep}/services/tcp/ssh`],
    ["GET", `${ep}/ports`],
    ["POST", `${ep}/ports/127.0.0.1/tcp/2222`, { target: { service: "ssh" } }],
    ["DELETE", `${ep}/ports/127.0.0.1/tcp/2222`],
  ];
  const before = agent.snapshot();
  for (const [method, path, body] of routes) {
    const reply = await agent.call(method, path, body);
    assertError(reply, 404, "unknown_mesh", /^Unknown mesh "nowhere"$/);
  }
  assertEquals(agent.snapshot(), before);
});

// ---- hub queries ----

Deno.test("endpoint and service queries pass paging and search to the runtime", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const runtime = agent.runtime("home");
  const all = await agent.call("GET", "/api/meshes/home/endpoints");
  assertEquals(all.status, 200);
  assertEquals(all.body.total, 2);
  assertEquals(all.body.items.map((e: EndpointRecord) => e.name), ["test-box", "laptop-2"]);
  const page = await agent.call("GET", "/api/meshes/home/endpoints?offset=1&limit=1&q=-");
  assertEquals(page.body, { items: [REMOTE], total: 2, offset: 1, limit: 1 });
  const services = await agent.call("GET", "/api/meshes/home/services?limit=500&q=ssh");
  assertEquals(services.body, { items: [], total: 0, offset: 0, limit: 500 });
  assertEquals(runtime.queries, [
    { offset: 0, limit: 100, q: undefined },
    { offset: 1, limit: 1, q: "-" },
    { offset: 0, limit: 500, q: "ssh" },
  ]);
});

Deno.test("bad paging or search answers 400 bad_query without asking the hub", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const queries = [
    "offset=-1",
    "offset=abc",
    "offset=1e3",
    "limit=0",
    "limit=501",
    "limit=1.5",
    `q=${"x".repeat(201)}`,
  ];
  for (const query of queries) {
    for (const path of ["/api/meshes/home/endpoints", "/api/meshes/home/services"]) {
      assertError(await agent.call("GET", `${path}?${query}`), 400, "bad_query");
    }
  }
  assertEquals(agent.runtime("home").queries, []);
});

Deno.test("an endpoint is found by id or name, and an unknown one answers 404", async () => {
  await using agent = new TestAgent();
  const { endpoint } = await agent.join();
  const byId = await agent.call("GET", `/api/meshes/home/endpoints/${endpoint.id}`);
  assertEquals(byId.body.name, "test-box");
  const byName = await agent.call("GET", "/api/meshes/home/endpoints/laptop-2");
  assertEquals(byName.body, REMOTE);
  const unknown = await agent.call("GET", "/api/meshes/home/endpoints/nope");
  assertError(unknown, 404, "unknown_endpoint", /"nope"/);
});

// ---- services ----

Deno.test("a service is created, listed, replaced and deleted, each change published", async () => {
  await using agent = new TestAgent();
  const { endpoint } = await agent.join();
  const runtime = agent.runtime("home");
  const ssh = { proto: "tcp", name: "ssh", host: "127.0.0.1", port: 22, users: [], strict: false };
  const created = await agent.call("POST", `${SERVICES}/tcp/ssh`, { host: "127.0.0.1", port: 22 });
  assertEquals(created.status, 201);
  assertEquals(created.body, ssh);
  assertEquals(runtime.published, [[ssh]]);

  const web = {
    proto: "tcp",
    name: "web",
    host: "intranet.example.com",
    port: 8080,
    users: ["alice", "bob"],
    strict: true,
  };
  const byId = await agent.call(
    "POST",
    `/api/meshes/home/endpoints/${endpoint.id}/services/tcp/web`,
    { host: "intranet.example.com", port: 8080, users: ["alice", "bob", "alice"], strict: true },
  );
  assertEquals(byId.body, web);
  const listed = (await agent.call("GET", SERVICES)).body;
  assertEquals(listed.map(withoutState), [ssh, web]);
  assertEquals(listed[0].state.health, "ok");
  assertEquals(listed[0].state.message, "Service tcp/ssh is ready; no connection yet");
  assertEquals([listed[0].state.open, listed[0].state.bytesUp], [0, 0]);

  const moved = { ...ssh, host: "fd00::5", port: 2222, users: ["*"] };
  const replaced = await agent.call("POST", `${SERVICES}/tcp/ssh`, {
    host: "fd00:0::5",
    port: 2222,
    users: ["*"],
  });
  assertEquals({ status: replaced.status, body: replaced.body }, { status: 201, body: moved });
  assertEquals(runtime.published.at(-1), [moved, web]);
  assertEquals(agent.store.services("home"), [moved, web]);

  const deleted = await agent.call("DELETE", `${SERVICES}/tcp/ssh`);
  assertEquals({ status: deleted.status, body: deleted.body }, { status: 200, body: moved });
  assertEquals(runtime.published.at(-1), [web]);
  assertEquals((await agent.call("GET", SERVICES)).body.map(withoutState), [web]);
  assertEquals(runtime.published.length, 4);
});

Deno.test("deleting an unknown service answers 404 unknown_service and publishes nothing", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const reply = await agent.call("DELETE", `${SERVICES}/tcp/ssh`);
  assertError(reply, 404, "unknown_service", /Unknown service "tcp\/ssh" in mesh "home"/);
  assertEquals(agent.runtime("home").published, []);
});

Deno.test("bad service input answers 400 and changes neither store nor runtime", async (t) => {
  await using agent = new TestAgent();
  await agent.join();
  await agent.call("POST", `${SERVICES}/tcp/keep`, { host: "localhost", port: 1 });
  const before = agent.snapshot();
  const runtime = agent.runtime("home");
  const published = runtime.published.length;
  const ok = { host: "localhost", port: 22 };
  const cases: [string, string, unknown, string][] = [
    ["sctp protocol", "sctp/ssh", ok, "bad_proto"],
    ["name starting with a dot", "tcp/.ssh", ok, "bad_service_name"],
    ["name with a space", "tcp/my%20ssh", ok, "bad_service_name"],
    ["name over 64 characters", `tcp/${"s".repeat(65)}`, ok, "bad_service_name"],
    ["missing host", "tcp/ssh", { port: 22 }, "bad_host"],
    ["host with a space", "tcp/ssh", { host: "my host", port: 22 }, "bad_host"],
    [
      "host over 253 characters",
      "tcp/ssh",
      { host: "a.".repeat(127) + "bc", port: 22 },
      "bad_host",
    ],
    ["host that is a number", "tcp/ssh", { host: 10, port: 22 }, "bad_host"],
    ["port 0", "tcp/ssh", { host: "localhost", port: 0 }, "bad_port"],
    ["port 65536", "tcp/ssh", { host: "localhost", port: 65536 }, "bad_port"],
    ["port as text", "tcp/ssh", { host: "localhost", port: "22" }, "bad_port"],
    ["fractional port", "tcp/ssh", { host: "localhost", port: 22.5 }, "bad_port"],
    ["users as text", "tcp/ssh", { ...ok, users: "alice" }, "bad_users"],
    ["users mixing * and names", "tcp/ssh", { ...ok, users: ["*", "bob"] }, "bad_users"],
    ["bad user name", "tcp/ssh", { ...ok, users: ["bad name"] }, "bad_users"],
    ["strict as text", "tcp/ssh", { ...ok, strict: "yes" }, "bad_strict"],
    ["user that is a number", "tcp/ssh", { ...ok, users: [7] }, "bad_users"],
    ["unknown field", "tcp/ssh", { ...ok, user: "alice" }, "bad_request"],
    ["malformed JSON", "tcp/ssh", '{"host": "localhost",', "bad_json"],
    ["JSON that is not an object", "tcp/ssh", "[1]", "bad_json"],
    ["a replacement with a bad port", "tcp/keep", { host: "localhost", port: -1 }, "bad_port"],
  ];
  for (const [what, path, body, code] of cases) {
    await t.step(what, async () => {
      assertError(await agent.call("POST", `${SERVICES}/${path}`, body), 400, code);
      assertEquals(agent.snapshot(), before);
      assertEquals(runtime.published.length, published);
    });
  }
  await t.step("delete with a bad protocol or name", async () => {
    assertError(await agent.call("DELETE", `${SERVICES}/sctp/keep`), 400, "bad_proto");
    assertError(await agent.call("DELETE", `${SERVICES}/tcp/-keep`), 400, "bad_service_name");
    assertEquals(agent.snapshot(), before);
  });
});

Deno.test("managing another endpoint signs the request for it and passes on its answer, changing nothing here", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const before = agent.snapshot();
  const runtime = agent.runtime("home");
  for (const ep of ["laptop-2", "ep-remote"]) {
    const base = `/api/meshes/home/endpoints/${ep}`;
    const routes: [string, string, string, unknown?][] = [
      ["GET", `${base}/services`, "services"],
      ["POST", `${base}/services/tcp/ssh`, "services/tcp/ssh", { host: "localhost", port: 22 }],
      ["DELETE", `${base}/services/tcp/ssh`, "services/tcp/ssh"],
      ["GET", `${base}/ports`, "ports"],
      ["POST", `${base}/ports/127.0.0.1/tcp/2222`, "ports/127.0.0.1/tcp/2222", {
        target: { service: "ssh" },
      }],
      ["DELETE", `${base}/ports/127.0.0.1/tcp/2222`, "ports/127.0.0.1/tcp/2222"],
      ["GET", `${base}/log?limit=5`, "log?limit=5"],
    ];
    for (const [method, path, relative, body] of routes) {
      assertError(await agent.call(method, path, body), 403, "not_allowed");
      const sent = runtime.sent.at(-1)!;
      assertEquals(sent.target, "ep-remote");
      assertEquals(sent.method, method);
      assertEquals(sent.path, relative);
      assertEquals(sent.body, body === undefined ? "" : JSON.stringify(body));
      assert(sent.certificate.includes("BEGIN CERTIFICATE") && sent.signature.length > 40);
    }
  }
  const unknown = await agent.call(
    "POST",
    "/api/meshes/home/endpoints/nope/services/tcp/ssh",
    { host: "localhost", port: 22 },
  );
  assertError(unknown, 404, "unknown_endpoint", /"nope"/);
  assertEquals(agent.snapshot(), before);
  assertEquals(runtime.published, []);
  assertEquals(runtime.opened, []);
});

Deno.test("requests without the API token, or with a wrong one, answer 401 and change nothing", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const before = agent.snapshot();
  for (const authorization of ["", "Bearer wrong", `Basic ${API_TOKEN}`]) {
    for (const [method, path] of [["GET", "/api/meshes"], ["DELETE", "/api/meshes/home"]]) {
      const res = await agent.app(
        new Request(`http://127.0.0.1:7777${path}`, {
          method,
          headers: authorization
            ? { host: "127.0.0.1:7777", authorization }
            : { host: "127.0.0.1:7777" },
        }),
      ).catch((err) => json(errorBody(err).body, errorBody(err).status));
      assertEquals(res.status, 401);
      await res.body?.cancel();
    }
  }
  assertEquals(agent.snapshot(), before);
});

// ---- port mappings ----

Deno.test("a port mapping opens a real listener, is listed, and deleting it closes the listener", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const runtime = agent.runtime("home");
  const port = freePort();
  const mapping = {
    ip: "127.0.0.1",
    proto: "tcp",
    port,
    target: { service: "ssh", user: "root", endpoint: "laptop-2" },
  };
  const created = await agent.call("POST", `${PORTS}/127.0.0.1/tcp/${port}`, {
    target: { service: "ssh", user: "root", endpoint: "laptop-2" },
  });
  assertEquals(
    { status: created.status, body: withoutState(created.body) },
    { status: 201, body: mapping },
  );
  // Nobody offers tcp/ssh: the mapping is made, with a warning that says so.
  assertEquals(created.body.state.health, "unknown_service");
  assertEquals(created.body.warning, `User "root" offers no service tcp/ssh`);
  assertEquals(runtime.opened, [mapping]);
  assert(await canConnect(port), "the mapped port accepts connections");
  const listedPorts = (await agent.call("GET", PORTS)).body;
  assertEquals(listedPorts.map(withoutState), [mapping]);
  assertEquals(listedPorts[0].state.health, "unknown_service");

  const deleted = await agent.call("DELETE", `${PORTS}/127.0.0.1/tcp/${port}`);
  assertEquals({ status: deleted.status, body: deleted.body }, { status: 200, body: mapping });
  assertEquals(runtime.closed, [mapping]);
  assert(!(await canConnect(port)), "the port is closed again");
  assertEquals(agent.store.ports("home"), []);
  assertEquals((await agent.call("GET", PORTS)).body, []);
});

Deno.test("mapping a port that is already in use answers 409 port_in_use and stores nothing", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const occupier = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = occupier.addr as Deno.NetAddr;
    const reply = await agent.call("POST", `${PORTS}/127.0.0.1/tcp/${port}`, {
      target: { service: "ssh" },
    });
    assertError(
      reply,
      409,
      "port_in_use",
      new RegExp(`127\\.0\\.0\\.1/tcp/${port} is already in use`),
    );
    assertEquals(agent.store.ports("home"), []);
    assertEquals(agent.runtime("home").opened, []);
    assert(agent.logs.some((l) => l.msg === "port not opened" && l.mesh === "home"));
  } finally {
    occupier.close();
  }
});

Deno.test("mapping an address of no local interface answers 400 address_unavailable and stores nothing", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const reply = await agent.call("POST", `${PORTS}/192.0.2.1/tcp/${freePort()}`, {
    target: { service: "ssh" },
  });
  assertError(reply, 400, "address_unavailable", /192\.0\.2\.1/);
  assertEquals(agent.store.ports("home"), []);
});

Deno.test("mapping one address twice answers 409 port_mapped, also from another mesh", async () => {
  await using agent = new TestAgent();
  await agent.join("home");
  await agent.join("work");
  const port = freePort();
  const body = { target: { service: "ssh" } };
  assertEquals((await agent.call("POST", `${PORTS}/127.0.0.1/tcp/${port}`, body)).status, 201);
  const before = agent.snapshot();
  const again = await agent.call("POST", `${PORTS}/127.0.0.1/tcp/${port}`, body);
  assertError(again, 409, "port_mapped", /already mapped$/);
  const other = await agent.call(
    "POST",
    `/api/meshes/work/endpoints/test-box/ports/127.0.0.1/tcp/${port}`,
    body,
  );
  assertError(other, 409, "port_mapped", /already mapped by mesh "home"/);
  assertEquals(agent.snapshot(), before);
  assertEquals(agent.runtime("home").opened.length, 1);
  assertEquals(agent.runtime("work").opened, []);
});

Deno.test("an IPv6 listen address is kept in one spelling, so another spelling is the same port", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const port = freePort();
  const body = { target: { service: "ssh" } };
  const created = await agent.call("POST", `${PORTS}/0:0:0:0:0:0:0:1/tcp/${port}`, body);
  assertEquals(created.status, 201);
  assertEquals(created.body.ip, "::1");
  assertError(await agent.call("POST", `${PORTS}/[::1]/tcp/${port}`, body), 409, "port_mapped");
  assertEquals((await agent.call("DELETE", `${PORTS}/::1/tcp/${port}`)).status, 200);
  assertEquals(agent.store.ports("home"), []);
});

Deno.test("bad port mapping input answers 400 and changes neither store nor listeners", async (t) => {
  await using agent = new TestAgent();
  await agent.join();
  const before = agent.snapshot();
  const ok = { target: { service: "ssh" } };
  const cases: [string, string, unknown, string][] = [
    ["IPv4 octet over 255", "999.1.1.1/tcp/2222", ok, "bad_ip"],
    ["IPv4 with a leading zero", "127.0.0.01/tcp/2222", ok, "bad_ip"],
    ["host name instead of an address", "example.com/tcp/2222", ok, "bad_ip"],
    ["malformed IPv6", "1::2::3/tcp/2222", ok, "bad_ip"],
    ["sctp protocol", "127.0.0.1/sctp/2222", ok, "bad_proto"],
    ["port 0", "127.0.0.1/tcp/0", ok, "bad_port"],
    ["port 65536", "127.0.0.1/tcp/65536", ok, "bad_port"],
    ["port that is not a number", "127.0.0.1/tcp/ssh", ok, "bad_port"],
    ["no target", "127.0.0.1/tcp/2222", {}, "bad_target"],
    ["target as text", "127.0.0.1/tcp/2222", { target: "ssh" }, "bad_target"],
    ["bad service name", "127.0.0.1/tcp/2222", { target: { service: ".ssh" } }, "bad_target"],
    [
      "bad user name",
      "127.0.0.1/tcp/2222",
      { target: { service: "ssh", user: "a b" } },
      "bad_target",
    ],
    [
      "empty endpoint",
      "127.0.0.1/tcp/2222",
      { target: { service: "ssh", endpoint: "" } },
      "bad_target",
    ],
    [
      "unknown target field",
      "127.0.0.1/tcp/2222",
      { target: { service: "ssh", proto: "tcp" } },
      "bad_request",
    ],
    ["unknown body field", "127.0.0.1/tcp/2222", { ...ok, ip: "0.0.0.0" }, "bad_request"],
    ["malformed JSON", "127.0.0.1/tcp/2222", "{target:", "bad_json"],
  ];
  for (const [what, path, body, code] of cases) {
    await t.step(what, async () => {
      assertError(await agent.call("POST", `${PORTS}/${path}`, body), 400, code);
      assertEquals(agent.snapshot(), before);
      assertEquals(agent.runtime("home").opened, []);
    });
  }
});

Deno.test("deleting an unknown port mapping answers 404 unknown_port and closes nothing", async () => {
  await using agent = new TestAgent();
  await agent.join();
  const reply = await agent.call("DELETE", `${PORTS}/127.0.0.1/tcp/2222`);
  assertError(reply, 404, "unknown_port", /"127\.0\.0\.1\/tcp\/2222" in mesh "home"/);
  assertEquals(agent.runtime("home").closed, []);
});

// ---- request checks ----

Deno.test("a malformed JSON join answers 400 bad_json and stores nothing", async () => {
  await using agent = new TestAgent();
  assertError(await agent.call("POST", "/api/meshes/home", "{ca:"), 400, "bad_json");
  assertError(await agent.call("POST", "/api/meshes/home", ""), 400, "bad_json");
  assertEquals(agent.store.listMeshes(), []);
});

Deno.test("a body over 64 KiB answers 413 and changes nothing", async () => {
  await using agent = new TestAgent();
  await agent.join("home");
  const before = agent.snapshot();
  const big = JSON.stringify({ pad: "x".repeat(MAX_BODY_BYTES) });
  for (
    const path of [
      "/api/meshes/work",
      `${SERVICES}/tcp/ssh`,
      `${PORTS}/127.0.0.1/tcp/2222`,
    ]
  ) {
    assertError(await agent.call("POST", path, big), 413, "body_too_large", /65536 bytes/);
  }
  assertEquals(agent.snapshot(), before);
  assertEquals(agent.started.length, 1);
});

Deno.test("a non-loopback Host or a foreign Origin answers 403 and changes nothing", async () => {
  await using agent = new TestAgent();
  const rebound = await agent.call("POST", "/api/meshes/home", joinBody(), {
    host: "evil.example:7777",
  });
  assertError(rebound, 403, "foreign_host");
  const crossSite = await agent.call("POST", "/api/meshes/home", joinBody(), {
    origin: "http://evil.example",
  });
  assertError(crossSite, 403, "foreign_origin");
  assertError(
    await agent.call("GET", "/api/meshes", undefined, { host: "10.0.0.1" }),
    403,
    "foreign_host",
  );
  assertEquals(agent.store.listMeshes(), []);
  const sameSite = await agent.call("POST", "/api/meshes/home", joinBody(), {
    origin: "http://127.0.0.1:7777",
  });
  assertEquals(sameSite.status, 201);
});

Deno.test("every route of the agent API contract is routed: an unknown mesh is named, not the route", async () => {
  await using agent = new TestAgent();
  const mesh = "nomesh";
  for (const pattern of [AGENT_PATHS.mesh, AGENT_PATHS.policy, AGENT_PATHS.exit]) {
    assertError(await agent.call("GET", agentPath(pattern, { mesh })), 404, "unknown_mesh");
  }
  for (const route of ENDPOINT_ROUTES) {
    const path = agentPath(`${AGENT_PATHS.endpoint}/${route.pattern}`, {
      mesh,
      ep: "me",
      proto: "tcp",
      name: "web",
      ip: "127.0.0.1",
      port: 8080,
    });
    const body = route.method === "POST" ? {} : undefined;
    assertError(await agent.call(route.method, path, body), 404, "unknown_mesh");
  }
});

Deno.test("a wrong method answers 405 with Allow, and an unknown path 404", async () => {
  await using agent = new TestAgent();
  const wrong = await agent.call("PUT", "/api/meshes/home");
  assertError(wrong, 405, "method_not_allowed");
  assertEquals(wrong.headers.get("allow"), "GET, POST, PATCH, DELETE");
  assertError(await agent.call("GET", "/api/nothing"), 404, "unknown_route");
});

Deno.test("errors reach a real client as JSON through serveHttp", async () => {
  await using agent = new TestAgent();
  const server = serveHttp({
    listen: { hostname: "127.0.0.1", port: 0 },
    app: agent.app,
    log: agent.log,
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    const unknown = await fetch(`${base}/api/meshes/nowhere`, { headers: auth });
    assertEquals(unknown.status, 404);
    assertEquals(await unknown.json(), {
      error: { code: "unknown_mesh", message: 'Unknown mesh "nowhere"' },
    });
    const malformed = await fetch(`${base}/api/meshes/home`, {
      method: "POST",
      body: "{",
      headers: auth,
    });
    assertEquals(malformed.status, 400);
    assertEquals((await malformed.json()).error.code, "bad_json");
    const joined = await fetch(`${base}/api/meshes/home`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify(joinBody()),
    });
    assertEquals(joined.status, 201);
    assert(!(await joined.text()).includes(KEY_LINE));
  } finally {
    await server.shutdown();
  }
});
