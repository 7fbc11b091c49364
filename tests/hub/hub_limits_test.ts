/**
 * The hub's limits answer with a status instead of falling over: a session
 * beyond `--max-sessions` gets 429, an oversized control line ends the
 * endpoint's registration with a clear error, and the hub keeps serving. One
 * member's sessions, endpoints, services and control streams are capped
 * (429, logged at a limited rate), so one hostile member cannot take the hub
 * down (`bench/hostile_member.ts` measures the memory ceiling).
 */
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { HUB_PATHS, PROTOCOL_HEADER, PROTOCOL_VERSION } from "@ztm/shared/protocol";
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { errorCode, HubClient, userTls } from "../fixtures/hub_client.ts";

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
  const opened = await client.openStream(`/api/endpoints/ep-${"0".repeat(32)}/control`, huge);
  assertEquals(opened.status, 413);
  assertEquals(errorCode(opened.text), "control_line_too_large");
  await using other = HubClient.connect(hub.port, tls);
  assertEquals((await other.request("GET", "/api/status")).status, 200);
});

Deno.test("a user beyond --max-sessions-per-user gets 429, logged at a limited rate, and others keep working", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca, { args: ["--max-sessions-per-user=2"] });
  const mallory = userTls(await issueUser(ca.url, "mallory"));
  const alice = userTls(await issueUser(ca.url, "alice"));
  const held = [HubClient.connect(hub.port, mallory), HubClient.connect(hub.port, mallory)];
  try {
    for (const c of held) assertEquals((await c.request("GET", "/api/status")).status, 200);
    const refusedCodes: (string | undefined)[] = [];
    for (let i = 0; i < 20; i++) {
      await using extra = HubClient.connect(hub.port, mallory);
      const r = await extra.request("GET", "/api/status");
      assertEquals(r.status, 429, r.text);
      refusedCodes.push(errorCode(r.text));
    }
    assertEquals(new Set(refusedCodes), new Set(["too_many_sessions"]));
    // A refused session that asks nothing is not kept: the hub closes it.
    const idle = HubClient.connect(hub.port, mallory);
    await new Promise<void>((resolve) => idle.session.once("close", () => resolve()));
    await using other = HubClient.connect(hub.port, alice);
    assertEquals((await other.request("GET", "/api/status")).status, 200);
    assertEquals((await held[0].request("GET", "/api/status")).status, 200);
    const lines = hub.logs.filter((l) => l.msg === "session refused: user limit");
    assertEquals(lines[0]?.user, "mallory");
    assertEquals(lines.length < 5, true, `${lines.length} log lines for 20 refusals`);
    // Its sessions closed, the user may come back.
    await Promise.all(held.map((c) => c.close()));
    await eventually(
      async () => {
        await using again = HubClient.connect(hub.port, mallory);
        return (await again.request("GET", "/api/status")).status === 200;
      },
      10_000,
      "mallory back after closing her sessions",
    );
  } finally {
    await Promise.all(held.map((c) => c.close()));
  }
});

Deno.test("one session controls one endpoint: a second control stream for another id is refused even before any hello", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const tls = userTls(await issueUser(ca.url, "mallory"));
  await using client = HubClient.connect(hub.port, tls);
  const ids = ["one", "two", "three"].map((seed) => ({
    seed,
    id: endpointIdOfCertificate(tls.cert!, seed),
  }));
  // Every control stream is opened before any hello is sent.
  const streams = ids.map(({ id }) =>
    client.session.request({
      ":method": "POST",
      ":path": HUB_PATHS.control(id),
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    }, { endStream: false })
  );
  const statuses = streams.map((s) =>
    new Promise<number>((resolve) => {
      s.on("error", () => {});
      s.once("response", (headers) => resolve(Number(headers[":status"])));
      s.once("close", () => resolve(0));
    })
  );
  for (const [i, s] of streams.entries()) {
    s.write(
      JSON.stringify({
        type: "hello",
        name: `m-${i}`,
        seed: ids[i].seed,
        version: "t",
        services: [],
      }) +
        "\n",
    );
    await statuses[i]; // the first is registered before the next hello goes out
  }
  assertEquals(await Promise.all(statuses), [200, 409, 409]);
  const listed = JSON.parse((await client.request("GET", "/api/endpoints?q=m-")).text);
  assertEquals(listed.total, 1);
});

Deno.test("endpoints per user, services per endpoint and control streams per session are capped with 429", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca, {
    args: ["--max-endpoints-per-user=2", "--max-services=3", "--max-control-streams=1"],
  });
  const tls = userTls(await issueUser(ca.url, "mallory"));
  const clients = Array.from({ length: 3 }, () => HubClient.connect(hub.port, tls));
  try {
    assertEquals((await clients[0].openControl("a", "one")).status, 200);
    assertEquals((await clients[1].openControl("b", "two")).status, 200);
    const third = await clients[2].openControl("c", "three");
    assertEquals(third.status, 429, third.text);
    assertEquals(errorCode(third.text), "too_many_endpoints");
    // A known endpoint may come back, on a new session, while the user is at the cap.
    await using back = HubClient.connect(hub.port, tls);
    assertEquals((await back.openControl("a", "one")).status, 200);

    const services = Array.from(
      { length: 4 },
      (_, i) => ({ proto: "tcp", name: `s${i}`, users: [] }),
    );
    await using many = HubClient.connect(hub.port, userTls(await issueUser(ca.url, "bob")));
    const tooMany = await many.openControl("s", "services", { services });
    assertEquals(tooMany.status, 429, tooMany.text);
    assertEquals(errorCode(tooMany.text), "too_many_services");
    // (A refused control stream counts until the client closes its side too: use a new session.)
    await using fits = HubClient.connect(hub.port, userTls(await issueUser(ca.url, "carol")));
    const ok = await fits.openControl("s", "services", { services: services.slice(0, 3) });
    assertEquals(ok.status, 200, ok.text);
    // That control stream stays open: a second one on the session is over the cap of 1.
    const second = await fits.openControl("s", "services");
    assertEquals(second.status, 429, second.text);
    assertEquals(errorCode(second.text), "too_many_control_streams");
    assertEquals(hub.logs.some((l) => l.msg === "endpoint refused: limit"), true);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});
