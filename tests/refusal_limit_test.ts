/**
 * Refused tunnels cost the provider nothing before its access check, and a
 * user refused too often is answered 429 without any check (issue "Hostile
 * members, strangers and rogue hubs", item 8), with real processes: a hub
 * with its data port, bob's agent offering `tcp/echo` to alice only, and
 * carol as a hand-built hub client asking for tunnels over the data port.
 */
import assert from "node:assert/strict";
import { HUB_PATHS, LEG_HEADER } from "@ztm/shared/protocol";
import { Harness, issueUser } from "./harness.ts";
import { HubClient, userTls } from "./hub_client.ts";
import { hubStatus, SERVICE, startDataFixture } from "./data_fixture.ts";
import { startEchoServer } from "./net_helpers.ts";

const LIMIT = 20; // REFUSAL_LIMIT in agent/provider.ts
const EXTRA = 10;

Deno.test("a denied user's tunnels cause no data-port dial by the provider, and past the limit get 429", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  await using f = await startDataFixture(h, echo);
  const files = await issueUser(f.mesh.ca.url, "carol");
  await using carol = HubClient.connect(f.mesh.hub.port, userTls(files));
  const control = await carol.openControl("carol-hand", "carol-hand");
  assert.equal(control.status, 200, control.text || control.refused);
  control.stream.on("error", () => {});
  control.stream.on("data", () => {});

  const before = (await hubStatus(f.alice)).dataConnections;
  const fromLog = f.bob.proc.logs.length;
  // One burst, so all of it falls in one refusal window of the provider.
  const answers = await Promise.all(
    Array.from({ length: LIMIT + EXTRA }, () =>
      carol.openStream(
        HUB_PATHS.tunnel(f.bob.endpointId, "tcp", SERVICE),
        undefined,
        undefined,
        { [LEG_HEADER]: "tls" },
      )),
  );
  // Nothing dialled the data port for carol: the provider checked first.
  const after = (await hubStatus(f.alice)).dataConnections;
  assert.equal(after, before, "the provider dialled the data port for refused tunnels");
  const statuses = answers.map((a) => a.status);
  assert.equal(statuses.filter((s) => s === 403).length, LIMIT, JSON.stringify(statuses));
  assert.equal(statuses.filter((s) => s === 429).length, EXTRA, JSON.stringify(statuses));
  for (const a of answers) {
    assert.match(a.text, a.status === 403 ? /access_denied/ : /too_many_refusals/);
  }
  assert.equal(echo.accepted, 0, "a refused tunnel reached the target");

  // One line per refusal up to the limit, then one counted line; none for the 429s.
  await f.bob.proc.waitForLog((l) => l.msg === "tunnel refusals limited", 10_000, fromLog);
  const lines = f.bob.proc.logs.slice(fromLog).filter((l) => l.user === "carol");
  assert.equal(lines.filter((l) => l.msg === "tunnel refused").length, LIMIT);
  assert.equal(lines.filter((l) => l.msg === "tunnel refusals limited").length, 1);
});
