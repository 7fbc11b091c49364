/**
 * Management requests carried by the hub over real HTTP/2 streams: the body
 * is bounded and must be JSON, the target must be online, the target's answer
 * goes back to the caller as it is (status bounded), and a target that goes
 * offline ends the request.
 */
import assert from "node:assert/strict";
import { type HubMessage, MAX_MANAGE_BYTES } from "@ztm/shared/protocol";
import { eventually } from "../tests/fixtures/harness.ts";
import { errorCode } from "../tests/fixtures/hub_client.ts";
import { startH2Server } from "../tests/fixtures/h2_server.ts";
import { ManagementRelay } from "./management.ts";
import { type ControlChannel, Registry } from "./registry.ts";
import { respondError } from "./respond.ts";

const TARGET = `ep-${"b".repeat(32)}`;
const OFFLINE = `ep-${"c".repeat(32)}`;
const FROM = { endpoint: `ep-${"a".repeat(32)}`, user: "alice" };

type Manage = Extract<HubMessage, { type: "manage" }>;

async function setup() {
  const registry = new Registry({ purgeAfterMs: 60_000 });
  const relay = new ManagementRelay(registry);
  const sent: Manage[] = [];
  const target: ControlChannel = {
    send: (msg) => sent.push(msg as Manage),
    close() {},
    owner: {},
    serial: "0b",
  };
  const info = { version: "t", address: "a", services: [], user: "bob", serial: "0b" };
  registry.connect(TARGET, { ...info, name: "printer" }, target);
  const gone: ControlChannel = { ...target, send() {} };
  registry.connect(OFFLINE, { ...info, name: "gone" }, gone);
  registry.disconnect(OFFLINE, gone);
  const server = await startH2Server(async (stream, headers) => {
    try {
      await relay.forward(stream, String(headers[":path"]).slice(1), FROM);
    } catch (err) {
      respondError(stream, err);
    }
  });
  const client = await server.client();
  return {
    relay,
    sent,
    ask: (body: string, target = TARGET) => client.request("POST", `/${target}`, { body }),
    forwarded: (n: number) => eventually(() => sent[n], 5_000, `manage message ${n}`),
    async [Symbol.asyncDispose]() {
      relay.close();
      registry.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

Deno.test("a signed request is passed to the target as it came, with who asked; the target's answer returns as it is", async () => {
  await using t = await setup();
  const request = { method: "GET", path: "/api/services", signature: "c2ln" };
  const reply = t.ask(JSON.stringify(request));
  const msg = await t.forwarded(0);
  assert.equal(msg.type, "manage");
  assert.deepEqual(msg.request, request);
  assert.deepEqual(msg.from, FROM);
  t.relay.answered(FROM.endpoint, { type: "managed", rid: msg.rid, status: 200, body: "x" });
  t.relay.answered(TARGET, { type: "managed", rid: "another", status: 200, body: "x" });
  t.relay.answered(TARGET, { type: "managed", rid: msg.rid, status: 207, body: '{"ok":1}' });
  const answer = await reply;
  assert.deepEqual(
    [answer.status, answer.text],
    [207, '{"ok":1}'],
    "only the target's answer counts",
  );
  t.relay.answered(TARGET, { type: "managed", rid: msg.rid, status: 200, body: "again" }); // nothing left
});

Deno.test("an answer's status outside 200-599 becomes 502, and a body that is no string an empty one", async () => {
  await using t = await setup();
  for (const [i, status] of [99, 600, 200.5].entries()) {
    const reply = t.ask("{}");
    const msg = await t.forwarded(i);
    t.relay.answered(TARGET, {
      type: "managed",
      rid: msg.rid,
      status,
      body: 5 as unknown as string,
    });
    const answer = await reply;
    assert.deepEqual([answer.status, answer.text], [502, ""], `status ${status}`);
  }
});

Deno.test("the hub refuses at once a body over the limit, one that is no JSON, an unknown or offline target", async () => {
  await using t = await setup();
  const big = await t.ask(JSON.stringify({ pad: "x".repeat(MAX_MANAGE_BYTES) }));
  assert.deepEqual([big.status, errorCode(big.text)], [413, "body_too_large"]);
  const notJson = await t.ask("{nope");
  assert.deepEqual([notJson.status, errorCode(notJson.text)], [400, "bad_json"]);
  const unknown = await t.ask("{}", `ep-${"d".repeat(32)}`);
  assert.deepEqual([unknown.status, errorCode(unknown.text)], [404, "unknown_endpoint"]);
  const offline = await t.ask("{}", OFFLINE);
  assert.deepEqual([offline.status, errorCode(offline.text)], [503, "endpoint_offline"]);
  assert.deepEqual(t.sent, [], "nothing reached a target");
});

Deno.test("a target going offline fails its pending requests at once with 503", async () => {
  await using t = await setup();
  const reply = t.ask("{}");
  await t.forwarded(0);
  t.relay.endpointOffline(OFFLINE); // another endpoint: nothing
  t.relay.endpointOffline(TARGET);
  const answer = await reply;
  assert.deepEqual([answer.status, errorCode(answer.text)], [503, "endpoint_offline"]);
});
