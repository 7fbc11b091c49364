/**
 * Refused tunnels cost the provider nothing before its access check, and
 * refusals are limited per caller (issue "Hostile members, strangers and
 * rogue hubs", item 8). A member the provider's service does not list asks
 * again and again: the provider refuses on the hub's claim alone (no data
 * connection, no target), answers each refusal until the per-caller limit,
 * then 429 without a check or a log line, while an allowed member still
 * gets through.
 */
import assert from "node:assert/strict";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { MAX_REFUSALS_PER_WINDOW } from "@ztm/shared/peer_protocol";
import { Harness } from "../fixtures/harness.ts";
import { errorCode, HubClient, userTls } from "../fixtures/hub_client.ts";
import { hubStatus, mappedEcho } from "../fixtures/data_fixture.ts";
import { startMeshOf } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("a refused caller costs the provider no dial before the access check, and its refusals are limited", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "mallory"]);
  const { bob, mallory } = m.agents;
  // Bob's echo lists alice only; mallory speaks the hub protocol by hand.
  const port = await mappedEcho(m, echo);
  await using client = HubClient.connect(m.hub.port, userTls(mallory.files));
  const control = await client.openControl("mallory-hand", "mallory-hand");
  assert.equal(control.status, 200, control.text || control.refused);
  control.stream.on("error", () => {});
  control.stream.on("data", () => {});
  const before = await hubStatus(client);
  const accepted = echo.accepted;
  const fromLog = bob.proc.logs.length;

  const codes: string[] = [];
  for (let i = 0; i < MAX_REFUSALS_PER_WINDOW + 10; i++) {
    const reply = await client.request("POST", HUB_PATHS.tunnel(bob.endpointId, "tcp", "echo"));
    codes.push(`${reply.status} ${errorCode(reply.text)}`);
  }
  // Each refused before any byte: no data connection was dialled, no target reached.
  const after = await hubStatus(client);
  assert.equal(after.dataConnections, before.dataConnections, "the provider dialled the data port");
  assert.equal(echo.accepted, accepted);
  // The first refusals say why; past the limit the provider answers 429 and stops logging.
  assert.deepEqual(
    codes.slice(0, MAX_REFUSALS_PER_WINDOW),
    Array(MAX_REFUSALS_PER_WINDOW).fill("403 access_denied"),
  );
  assert.deepEqual(codes.slice(MAX_REFUSALS_PER_WINDOW), Array(10).fill("429 too_many_refusals"));
  const lines = bob.proc.logs.slice(fromLog);
  assert.equal(lines.filter((l) => l.msg === "tunnel refused").length, MAX_REFUSALS_PER_WINDOW);
  // One counted line when the limit trips; none for the 429s.
  assert.equal(lines.filter((l) => l.msg === "tunnel refusals limited").length, 1);

  // An allowed member is not held back by mallory's refusals.
  await echoRoundTrip(port, 4096);
});
