/**
 * The hub's limits answer with a status instead of falling over: a session
 * beyond `--max-sessions` gets 429, an oversized control line ends the
 * endpoint's registration with a clear error, and the hub keeps serving.
 */
import { assertEquals } from "./assert.ts";
import { Harness, issueUser } from "./harness.ts";
import { errorCode, HubClient, userTls } from "./hub_client.ts";

Deno.test("a session beyond --max-sessions gets 429 and the admitted one keeps working", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca, { args: ["--max-sessions=1"] });
  const tls = userTls(await issueUser(ca.url, "alice"));
  await using first = HubClient.connect(hub.port, tls);
  assertEquals((await first.request("GET", "/api/status")).status, 200);
  await using second = HubClient.connect(hub.port, tls);
  const refused = await second.request("GET", "/api/status");
  assertEquals(refused.status, 429);
  assertEquals(errorCode(refused.text), "hub_full");
  assertEquals((await first.request("GET", "/api/status")).status, 200);
});

Deno.test("a control line over the limit gets 413 and the hub still answers", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const tls = userTls(await issueUser(ca.url, "alice"));
  await using client = HubClient.connect(hub.port, tls);
  const huge =
    JSON.stringify({ type: "hello", name: "x".repeat(300 * 1024), version: "t", services: [] }) +
    "\n";
  const opened = await client.openStream("/api/endpoints/big/control", huge);
  assertEquals(opened.status, 413);
  assertEquals(errorCode(opened.text), "control_line_too_large");
  await using other = HubClient.connect(hub.port, tls);
  assertEquals((await other.request("GET", "/api/status")).status, 200);
});
