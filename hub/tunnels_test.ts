/**
 * Pairing on the hub over real HTTP/2 streams: the caller's request waits for
 * the provider's answer on its control channel, and gets its ticket, the
 * provider's refusal, or the hub's own (offline, unknown service, timeout,
 * revoked); pairs that die void their tickets.
 */
import assert from "node:assert/strict";
import type { ClientHttp2Stream } from "node:http2";
import type { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import { type HubMessage, PROTOCOL_HEADER, PROTOCOL_VERSION } from "@ztm/shared/protocol";
import { eventually } from "../tests/fixtures/harness.ts";
import { errorCode } from "../tests/fixtures/hub_client.ts";
import { startH2Server } from "../tests/fixtures/h2_server.ts";
import { type ControlChannel, Registry } from "./registry.ts";
import { respondError } from "./respond.ts";
import { Tickets } from "./tickets.ts";
import { Tunnels } from "./tunnels.ts";

const CALLER = `ep-${"a".repeat(32)}`;
const PROVIDER = `ep-${"b".repeat(32)}`;
const OFFLINE = `ep-${"c".repeat(32)}`;

type Open = Extract<HubMessage, { type: "open" }>;

async function setup(openTimeoutMs = 10_000) {
  const logs: Record<string, unknown>[] = [];
  const log = new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) });
  const registry = new Registry({ purgeAfterMs: 60_000 });
  const tickets = new Tickets();
  const outcomes: (ZtmError | undefined)[] = [];
  const tunnels = new Tunnels({
    registry,
    tickets,
    log,
    openTimeoutMs,
    onOutcome: (err) => outcomes.push(err),
  });
  const opens: Open[] = [];
  const providerSession = {};
  const provider: ControlChannel = {
    send: (msg) => opens.push(msg as Open),
    close() {},
    owner: providerSession,
    serial: "0b",
  };
  const services = [{ proto: "tcp" as const, name: "web", users: ["*"] }];
  const info = { version: "t", address: "a", services };
  registry.connect(PROVIDER, { ...info, name: "printer", user: "bob", serial: "0b" }, provider);
  const gone: ControlChannel = { ...provider, send() {} };
  registry.connect(OFFLINE, { ...info, name: "gone", user: "bob", serial: "0c" }, gone);
  registry.disconnect(OFFLINE, gone);
  const callerSession = {};
  const server = await startH2Server((stream, headers) => {
    const [target, proto, name] = String(headers[":path"]).split("/").slice(1);
    try {
      tunnels.open(
        stream,
        { endpoint: CALLER, user: "alice", serial: "0a", session: callerSession },
        target,
        proto as "tcp",
        name,
      );
    } catch (err) {
      respondError(stream, err);
    }
  });
  const client = await server.client();
  /** Asks for a pair; resolves with the hub's answer (status and body). */
  const ask = (path = `/${PROVIDER}/tcp/web`) => client.request("POST", path);
  /** Opens a pair's request without waiting for an answer; the stream is the caller's. */
  const askRaw = (): ClientHttp2Stream => {
    const stream = client.session.request({
      ":method": "POST",
      ":path": `/${PROVIDER}/tcp/web`,
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    });
    stream.on("error", () => {});
    return stream;
  };
  /** The `open` message number `n` (0-based) sent to the provider, once it comes. */
  const opened = (n: number) => eventually(() => opens[n], 5_000, `open message ${n}`);
  return {
    tunnels,
    tickets,
    registry,
    outcomes,
    logs,
    opens,
    providerSession,
    callerSession,
    ask,
    askRaw,
    opened,
    async [Symbol.asyncDispose]() {
      tunnels.close();
      registry.close();
      await client.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

Deno.test("the provider is asked with its own ticket; the caller gets its ticket once the provider accepts", async () => {
  await using t = await setup();
  const answer = t.ask();
  const open = await t.opened(0);
  assert.equal(open.type, "open");
  assert.deepEqual(open.service, { proto: "tcp", name: "web" });
  assert.deepEqual(open.from, { endpoint: CALLER, user: "alice" });
  assert.equal(t.tunnels.pending, 1);
  t.tunnels.accept(CALLER, open.sid); // only the target may accept
  t.tunnels.accept(PROVIDER, "another-sid");
  assert.equal(t.tunnels.pending, 1);
  const provider = t.tickets.claim(open.ticket);
  assert.deepEqual(provider, {
    sid: open.sid,
    side: "provider",
    endpoint: PROVIDER,
    serial: "0b",
    owner: t.providerSession,
  });
  t.tunnels.accept(PROVIDER, open.sid);
  const reply = await answer;
  assert.equal(reply.status, 200);
  const body = JSON.parse(reply.text);
  assert.equal(body.sid, open.sid);
  assert.deepEqual(t.tickets.claim(body.ticket), {
    sid: open.sid,
    side: "caller",
    endpoint: CALLER,
    serial: "0a",
    owner: t.callerSession,
  });
  assert.equal(t.tunnels.pending, 0);
  assert.deepEqual(t.outcomes, [undefined]);
  t.tunnels.accept(PROVIDER, open.sid); // a second accept finds nothing
  assert.equal(t.tickets.size, 0);
});

Deno.test("the hub answers at once what it can tell: unknown endpoint, offline endpoint, unknown service", async () => {
  await using t = await setup();
  const unknown = await t.ask(`/ep-${"d".repeat(32)}/tcp/web`);
  assert.deepEqual([unknown.status, errorCode(unknown.text)], [404, "unknown_endpoint"]);
  const offline = await t.ask(`/${OFFLINE}/tcp/web`);
  assert.deepEqual([offline.status, errorCode(offline.text)], [503, "endpoint_offline"]);
  const noService = await t.ask(`/${PROVIDER}/tcp/ssh`);
  assert.deepEqual([noService.status, errorCode(noService.text)], [404, "unknown_service"]);
  const otherProto = await t.ask(`/${PROVIDER}/udp/web`);
  assert.deepEqual([otherProto.status, errorCode(otherProto.text)], [404, "unknown_service"]);
  assert.deepEqual(t.opens, [], "the provider was never asked");
  assert.equal(t.tickets.size, 0);
  assert.equal(t.tunnels.pending, 0);
});

Deno.test("a provider's refusal reaches the caller with its status, its code and message bounded; an odd status becomes 502", async () => {
  await using t = await setup();
  const first = t.ask();
  const open = await t.opened(0);
  t.tunnels.refuse(PROVIDER, open.sid, 403, "access_denied", "Not for you");
  const denied = await first;
  assert.equal(denied.status, 403);
  assert.deepEqual(JSON.parse(denied.text).error, {
    code: "access_denied",
    message: "Not for you",
  });
  assert.equal(t.tickets.claim(open.ticket), undefined, "the provider's ticket is void");
  assert.ok(t.logs.some((l) => l.msg === "tunnel refused by provider" && l.status === 403));

  const second = t.ask();
  const open2 = await t.opened(1);
  t.tunnels.refuse(PROVIDER, open2.sid, 200, "", "m".repeat(600));
  const odd = await second;
  assert.equal(odd.status, 502);
  const error = JSON.parse(odd.text).error;
  assert.equal(error.code, "refused");
  assert.equal(error.message.length, 500);

  const third = t.ask();
  const open3 = await t.opened(2);
  t.tunnels.refuse(PROVIDER, open3.sid, 451.5, "x".repeat(100), "No");
  const long = await third;
  assert.equal(long.status, 502);
  assert.equal(errorCode(long.text), "x".repeat(64));
  assert.deepEqual(t.outcomes.map((e) => e?.status), [403, 502, 502]);
});

Deno.test("a provider that does not answer in time fails the pair with 504 open_timeout", async () => {
  await using t = await setup(100);
  const answer = t.ask();
  const open = await t.opened(0);
  const reply = await answer;
  assert.deepEqual([reply.status, errorCode(reply.text)], [504, "open_timeout"]);
  assert.equal(t.tickets.claim(open.ticket), undefined);
  t.tunnels.accept(PROVIDER, open.sid); // too late: nothing happens
  assert.equal(t.tickets.size, 0);
  assert.equal(t.outcomes[0]?.code, "open_timeout");
});

Deno.test("pending pairs fail at once when their provider goes offline (503) or a certificate of theirs is revoked (403)", async () => {
  await using t = await setup();
  const a = t.ask();
  await t.opened(0);
  t.tunnels.endpointOffline(CALLER); // not the target: nothing
  t.tunnels.endpointOffline(PROVIDER);
  const offline = await a;
  assert.deepEqual([offline.status, errorCode(offline.text)], [503, "endpoint_offline"]);

  const b = t.ask();
  const c = t.ask();
  await t.opened(2);
  t.tunnels.revoke(new Set(["ff"]));
  assert.equal(t.tunnels.pending, 2);
  t.tunnels.revoke(new Set(["0a"])); // the caller's serial
  for (const reply of await Promise.all([b, c])) {
    assert.deepEqual([reply.status, errorCode(reply.text)], [403, "revoked"]);
  }
  const d = t.ask();
  await t.opened(3);
  t.tunnels.revoke(new Set(["0b"])); // the provider's serial
  assert.equal((await d).status, 403);
  assert.equal(t.tickets.size, 0);
  assert.equal(t.tunnels.pending, 0);
});

Deno.test("a caller's closed session or stream drops its pairs without an answer and voids their tickets", async () => {
  await using t = await setup();
  const s1 = t.askRaw();
  const open1 = await t.opened(0);
  t.tunnels.sessionClosed({}); // another session: nothing
  assert.equal(t.tunnels.pending, 1);
  t.tunnels.sessionClosed(t.callerSession);
  assert.equal(t.tunnels.pending, 0);
  assert.equal(t.tickets.claim(open1.ticket), undefined);
  t.tunnels.accept(PROVIDER, open1.sid);
  assert.equal(t.tickets.size, 0, "an accept after the drop mints nothing");
  s1.close();

  const s2 = t.askRaw();
  const open2 = await t.opened(1);
  s2.close();
  await eventually(() => t.tunnels.pending === 0, 5_000, "the pair dropped with its stream");
  assert.equal(t.tickets.claim(open2.ticket), undefined);
  assert.deepEqual(t.outcomes, [], "a dropped pair is no outcome");
});
