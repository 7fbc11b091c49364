/**
 * One endpoint's control stream over real HTTP/2 sessions: what is refused
 * before the hello, how the hello is checked, the welcome and hub list it
 * earns, the lines that follow (services, accept, refuse, managed), and what
 * its closing or a takeover by another session does.
 */
import assert from "node:assert/strict";
import type { ServerHttp2Session } from "node:http2";
import type { TLSSocket } from "node:tls";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { Logger } from "@ztm/shared/log";
import type { HubListEntry } from "@ztm/shared/protocol";
import { eventually } from "../tests/fixtures/harness.ts";
import { errorCode, HubClient, type OpenedStream } from "../tests/fixtures/hub_client.ts";
import { type LineReader, lineReader, startH2Server } from "../tests/fixtures/h2_server.ts";
import { admit } from "./admit.ts";
import { type ControlContext, serveControl, type SessionState } from "./control.ts";
import { LogThrottle } from "./log_throttle.ts";
import { ManagementRelay } from "./management.ts";
import { HubMetrics } from "./metrics.ts";
import { Registry } from "./registry.ts";
import { respondError } from "./respond.ts";
import { Tickets } from "./tickets.ts";
import { Tunnels } from "./tunnels.ts";

const LIMITS = {
  maxControlStreamsPerSession: 1,
  maxServicesPerEndpoint: 3,
  maxServiceBytesPerEndpoint: 400,
};

async function setup() {
  const logs: Record<string, unknown>[] = [];
  const log = new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) });
  const registry = new Registry({ purgeAfterMs: 60_000 });
  const tunnels = new Tunnels({ registry, tickets: new Tickets(), log });
  const management = new ManagementRelay(registry);
  const metrics = new HubMetrics();
  let hubs: HubListEntry[] = [];
  const ctx: ControlContext = {
    registry,
    limits: LIMITS,
    log,
    quiet: new LogThrottle(log),
    metrics,
    tunnels,
    management,
    welcomeHub: () => ({ version: "9.9.9", dataPort: 4242 }),
    hubList: () => hubs,
  };
  const states = new Map<ServerHttp2Session, SessionState>();
  const caller = { endpoint: `ep-${"f".repeat(32)}`, user: "carol" };
  const server = await startH2Server(async (stream, headers, session) => {
    const [, kind, id] = String(headers[":path"]).split("/");
    try {
      if (kind === "control") {
        serveControl(ctx, stream, decodeURIComponent(id), states.get(session)!);
      } // A caller's side, to see what the provider's lines and going offline do.
      else if (kind === "pair") {
        tunnels.open(stream, { ...caller, serial: "0f", session: {} }, id, "tcp", "web");
      } else if (kind === "manage") await management.forward(stream, id, caller);
    } catch (err) {
      respondError(stream, err);
    }
  }, {
    onSession: (session) =>
      states.set(session, {
        peer: admit(session.socket as TLSSocket, () => false),
        controls: 0,
        counted: true,
        pingDueAt: 0,
        peerPingAt: 0,
      }),
  });
  /** Opens a control stream for `id` (default: derived from the client's key and `seed`) with `first` as its first bytes. */
  const control = async (
    client: HubClient,
    first: string,
    id: string,
  ): Promise<OpenedStream & { reader?: LineReader }> => {
    const opened = await client.openStream(`/control/${encodeURIComponent(id)}`, first);
    return opened.status === 200 ? { ...opened, reader: lineReader(opened.stream) } : opened;
  };
  const hello = (seed: string, fields: Record<string, unknown> = {}) =>
    JSON.stringify({
      type: "hello",
      name: "laptop",
      seed,
      version: "1.0",
      services: [],
      ...fields,
    }) +
    "\n";
  /** Registers endpoint `seed` of `client`; resolves with its id, stream, reader and welcome. */
  const register = async (
    client: HubClient,
    seed: string,
    fields: Record<string, unknown> = {},
  ) => {
    const id = endpointIdOfCertificate(client.cert!, seed);
    const opened = await control(client, hello(seed, fields), id);
    assert.equal(opened.status, 200, opened.text);
    return { id, ...opened, reader: opened.reader!, welcome: await opened.reader!.next() };
  };
  return {
    server,
    registry,
    metrics,
    logs,
    control,
    hello,
    register,
    setHubs: (h: HubListEntry[]) => (hubs = h),
    async [Symbol.asyncDispose]() {
      tunnels.close();
      management.close();
      registry.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

const web = { proto: "tcp", name: "web", users: ["*"] };

Deno.test("a hello with an id of the session's key and seed registers the endpoint: a welcome, then the hub list", async () => {
  await using t = await setup();
  const hub: HubListEntry = { addresses: ["hub.example:8888"], certificate: "PEM" };
  t.setHubs([hub]);
  const client = await t.server.client("alice");
  const r = await t.register(client, "seed1", { services: [web] });
  assert.equal(r.headers?.["content-type"], "application/x-ndjson");
  assert.equal(r.welcome.type, "welcome");
  assert.deepEqual(r.welcome.hub, { version: "9.9.9", dataPort: 4242 });
  assert.equal(r.welcome.endpoint.id, r.id);
  assert.equal(r.welcome.endpoint.name, "laptop");
  assert.equal(r.welcome.endpoint.user, "alice", "the user is the certificate's, not the hello's");
  assert.deepEqual(await r.reader.next(), { type: "hubs", hubs: [hub] });
  const listed = t.registry.get(r.id);
  assert.equal(listed.online, true);
  assert.deepEqual(listed.services, [web]);
  assert.equal(listed.version, "1.0");
  assert.ok(t.logs.some((l) => l.msg === "endpoint online" && l.endpoint === r.id));
});

Deno.test("before any hello the hub refuses a bad id, a second endpoint on one session, a stream over the limit, another user's endpoint", async () => {
  await using t = await setup();
  const alice = await t.server.client("alice");
  const bad = await t.control(alice, t.hello("s"), "laptop");
  assert.deepEqual([bad.status, errorCode(bad.text)], [400, "bad_endpoint_id"]);
  const first = await t.register(alice, "s1");
  const other = await t.control(alice, t.hello("s2"), endpointIdOfCertificate(alice.cert!, "s2"));
  assert.deepEqual([other.status, errorCode(other.text)], [409, "session_has_endpoint"]);
  const again = await t.control(alice, t.hello("s1"), first.id);
  assert.deepEqual([again.status, errorCode(again.text)], [429, "too_many_control_streams"]);
  assert.match(
    await t.metrics.metrics.text(),
    /ztm_hub_admission_refusals_total\{reason="too_many_control_streams"\} 1/,
  );
  const bob = await t.server.client("bob");
  const taken = await t.control(bob, t.hello("s1"), first.id);
  assert.deepEqual([taken.status, errorCode(taken.text)], [403, "endpoint_taken"]);
});

Deno.test("the hello is checked: first message, name, the id's derivation, version, services within limits", async () => {
  await using t = await setup();
  const cases: [string, (cert: string) => { first: string; id?: string }, number, string][] = [
    ["not JSON", () => ({ first: "hello\n" }), 400, "bad_message"],
    ["not a hello", () => ({ first: '{"type":"services","services":[]}\n' }), 400, "no_hello"],
    [
      "an id-like name",
      () => ({ first: t.hello("s", { name: `ep-${"0".repeat(32)}` }) }),
      400,
      "bad_name",
    ],
    ["a bad name", () => ({ first: t.hello("s", { name: "my laptop" }) }), 400, "bad_name"],
    [
      "another seed",
      (cert) => ({ first: t.hello("s"), id: endpointIdOfCertificate(cert, "x") }),
      403,
      "endpoint_not_yours",
    ],
    ["no seed", () => ({ first: t.hello("s", { seed: 5 }) }), 403, "endpoint_not_yours"],
    [
      "control characters",
      () => ({ first: t.hello("s", { version: "1\u001b[2J" }) }),
      400,
      "bad_version",
    ],
    [
      "bad services",
      () => ({ first: t.hello("s", { services: [{ proto: "icmp" }] }) }),
      400,
      "bad_services",
    ],
    [
      "four services",
      () => ({
        first: t.hello("s", { services: ["a", "b", "c", "d"].map((name) => ({ ...web, name })) }),
      }),
      429,
      "too_many_services",
    ],
    [
      "long user lists",
      () => ({
        first: t.hello("s", {
          services: [{ ...web, users: Array.from({ length: 60 }, (_, i) => `user${i}`) }],
        }),
      }),
      429,
      "too_many_services",
    ],
  ];
  for (const [what, make, status, code] of cases) {
    await using client = await t.server.client("alice");
    const { first, id } = make(client.cert!);
    const r = await t.control(client, first, id ?? endpointIdOfCertificate(client.cert!, "s"));
    assert.deepEqual([r.status, errorCode(r.text)], [status, code], what);
  }
  assert.deepEqual(t.registry.counts(), { endpoints: 0, online: 0 });
});

Deno.test("after the hello: services replace the endpoint's, and a bad line gets an error line and ends the stream", async () => {
  await using t = await setup();
  const client = await t.server.client("alice");
  const r = await t.register(client, "s1", { services: [web] });
  const ssh = { proto: "tcp", name: "ssh", users: ["bob"] };
  r.stream.write(JSON.stringify({ type: "services", services: [ssh] }) + "\n");
  await eventually(() => t.registry.get(r.id).services[0]?.name === "ssh", 5_000, "new services");
  r.stream.write('{"type":"services","services":"none"}\n');
  const error = await r.reader.next(); // no hub list came: the hub knows none
  assert.equal(error.type, "error");
  assert.equal(error.code, "bad_message");
  await r.reader.ended();
  r.stream.close(); // the agent's side closes too
  await eventually(() => !t.registry.get(r.id).online, 5_000, "the endpoint offline");
  assert.deepEqual(t.registry.get(r.id).services, [ssh]);
});

Deno.test("the provider's accept, refuse and managed lines answer its callers; its stream closing fails what is pending", async () => {
  await using t = await setup();
  const provider = await t.register(await t.server.client("alice"), "s1", { services: [web] });
  const caller = await t.server.client("carol");

  const accepted = caller.request("POST", `/pair/${provider.id}`);
  const open1 = await provider.reader.next();
  assert.equal(open1.type, "open");
  provider.stream.write(JSON.stringify({ type: "accept", sid: open1.sid }) + "\n");
  assert.equal((await accepted).status, 200);

  const refused = caller.request("POST", `/pair/${provider.id}`);
  const open2 = await provider.reader.next();
  const refusal = { type: "refuse", sid: open2.sid, status: 403, code: "no", message: "No" };
  provider.stream.write(JSON.stringify(refusal) + "\n");
  const no = await refused;
  assert.deepEqual([no.status, errorCode(no.text)], [403, "no"]);

  const managed = caller.request("POST", `/manage/${provider.id}`, { body: '{"signed":1}' });
  const manage = await provider.reader.next();
  assert.equal(manage.type, "manage");
  assert.deepEqual(manage.request, { signed: 1 });
  const answer = { type: "managed", rid: manage.rid, status: 202, body: '{"done":true}' };
  provider.stream.write(JSON.stringify(answer) + "\n");
  const done = await managed;
  assert.deepEqual([done.status, done.text], [202, '{"done":true}']);

  const pending = caller.request("POST", `/pair/${provider.id}`);
  const pendingManage = caller.request("POST", `/manage/${provider.id}`, { body: "{}" });
  await provider.reader.next();
  await provider.reader.next();
  provider.stream.close();
  for (const reply of await Promise.all([pending, pendingManage])) {
    assert.deepEqual([reply.status, errorCode(reply.text)], [503, "endpoint_offline"]);
  }
  assert.equal(t.registry.get(provider.id).online, false);
  assert.ok(t.logs.some((l) => l.msg === "endpoint offline" && l.endpoint === provider.id));
});

Deno.test("a hello from another session of the same key takes the endpoint over and resets the old stream", async () => {
  await using t = await setup();
  const alice = await t.server.client("alice");
  const first = await t.register(alice, "s1");
  await using again = HubClient.connect(t.server.port, {
    ca: t.server.ca.pem,
    cert: alice.certificate,
    key: alice.privateKey,
  });
  const second = await t.register(again, "s1");
  assert.equal(second.id, first.id);
  await first.reader.ended();
  assert.equal(first.stream.rstCode, 8, "NGHTTP2_CANCEL: the agent sees its stream closed");
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(t.registry.get(first.id).online, true, "the old stream's close leaves it online");
  second.stream.close();
  await eventually(() => !t.registry.get(first.id).online, 5_000, "offline with its last stream");
});
