/**
 * Every hub of a mesh on the dashboard's Status screen and in `ztm status`,
 * with two real hubs: both shown connected with their round trip and since
 * when; one killed shows "not connected" with its last error in words while
 * the other stays connected.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { agentFlags, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, type ApiBody, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { MESH, waitConnected } from "../fixtures/mesh_fixture.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";

/** The Status screen's line for the hub at `address`. */
function hubItem(page: Page, address: string) {
  return page.locator(`[data-testid=hub][data-address="${address}"]`);
}

Deno.test("the Status screen and ztm status show each hub of a mesh: up with its round trip, or down with the error", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hubA = await h.startHub(ca);
  const hubB = await h.startHub(ca);
  const files = await issueUser(ca.url, "alice");
  const agent = await h.startAgent({ name: "agent-alice" });
  const joined = await api(agent.url, "POST", `/api/meshes/${MESH}`, {
    ca: files.ca,
    agent: { name: "alice-ep", certificate: files.certificate, privateKey: files.privateKey },
    bootstraps: [hubA.address, hubB.address],
  });
  assert.equal(joined.status, 201, JSON.stringify(joined.body));
  await waitConnected(agent);
  // Both sessions up, each with a measured round trip.
  await eventually(
    async () => {
      const hubs: ApiBody[] = (await api(agent.url, "GET", `/api/meshes/${MESH}`)).body.status
        ?.hubs ?? [];
      return hubs.length === 2 && hubs.every((x) => x.connected && x.rttMs !== null);
    },
    30_000,
    "both hubs up with a round trip",
  );

  await using b = await openBrowser();
  const page = await b.signIn(agent.url, WIDE);
  await goTo(page, "#/", /^Status$/);
  for (const hub of [hubA, hubB]) {
    const item = hubItem(page, hub.address);
    await item.waitFor({ timeout: 10_000 });
    const text = await item.innerText();
    assert.match(text, new RegExp(`^${hub.address}`));
    assert.match(text, /\bconnected\b/);
    assert.match(text, /round trip ([\d.]+ ms|not measured yet)/);
    assert.match(text, /up since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
  }
  assert.equal(await page.locator("[data-testid=hub]").count(), 2);
  await screenshot(page, "status-hubs");
  const up = await ztmOk(["status", ...agentFlags(agent)]);
  for (const hub of [hubA, hubB]) {
    assert.match(
      up,
      new RegExp(
        `^${MESH}: hub ${hub.address}: up since \\S+, round trip ([\\d.]+ ms|not measured yet)$`,
        "m",
      ),
    );
  }

  // Hub B dies: its line says so in words, with the error; hub A stays up.
  await hubB.kill();
  const down = hubItem(page, hubB.address);
  // In words first: a killed hub's port refuses connections (the first words may be the lost
  // session's, until the agent's next dial is refused).
  const refused = new RegExp(`not connected nothing listens on ${hubB.address}`);
  await eventually(
    async () => refused.test(await down.innerText()),
    30_000,
    "the dashboard shows hub B down: nothing listens",
  );
  assert.match(await down.innerText(), /down since/);
  // The words are the agent's last error for that hub (read again each try: a new dial may
  // have failed with other words in between).
  await eventually(
    async () => {
      const hubs: ApiBody[] = (await api(agent.url, "GET", `/api/meshes/${MESH}`)).body.status.hubs;
      const err = hubs.find((x) => x.address === hubB.address)?.lastError;
      return typeof err === "string" && err !== "" && (await down.innerText()).includes(err);
    },
    15_000,
    "the dashboard shows hub B's last error",
  );
  assert.match(await hubItem(page, hubA.address).innerText(), /^\S+ connected round trip/);
  await page.setViewportSize(NARROW);
  assert.deepEqual(await layoutProblems(page), []);
  await screenshot(page, "status-hubs-one-down");
  const out = await ztmOk(["status", ...agentFlags(agent)]);
  assert.match(out, new RegExp(`^${MESH}: hub ${hubA.address}: up since `, "m"));
  assert.match(
    out,
    new RegExp(`^${MESH}: hub ${hubB.address}: down since \\S+: nothing listens on .+$`, "m"),
  );
  assert.deepEqual(b.unexpectedErrors(), []);
});
