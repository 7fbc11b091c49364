/**
 * Live updates: an endpoint whose agent stops is shown offline on the
 * endpoints screen without a reload, and the status screen shows the hub link
 * going down with its last error when the hub stops, while this endpoint's
 * own page keeps working (its lists are local) and asks the hub for nothing.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import { MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { goTo, openBrowser, screenshot, WIDE } from "../fixtures/ui_browser.ts";

Deno.test("an endpoint whose agent stops shows offline without a reload; a lost hub shows on Status", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["root", "bob"]);
  const root = m.agents.root;
  await using b = await openBrowser();
  const page = await b.signIn(root.url, WIDE);
  await goTo(page, `#/m/${MESH}/endpoints`, `Endpoints of ${MESH}`);
  const bobRow = page.locator('tr[data-endpoint="bob-ep"]');
  await bobRow.locator(".badge.on").waitFor({ timeout: 15_000 });
  // A marker that a reload would wipe.
  await page.evaluate(() => ((globalThis as Record<string, unknown>).stayed = true));

  const stopped = await m.agents.bob.proc.stop();
  assert.equal(stopped.code, 0);
  await bobRow.locator(".badge.off").waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => (globalThis as Record<string, unknown>).stayed), true);
  await screenshot(page, "endpoints-offline");

  // The hub goes away: the status screen says the link is down and why.
  await goTo(page, "#/", "Status");
  // The mesh's own badge (the first; each hub's session has one too, in the list below it).
  await page.locator('[data-mesh="test"] .badge.on').first().waitFor();
  await m.hub.stop();
  await page.locator('[data-mesh="test"] .badge.off').first().waitFor({ timeout: 15_000 });
  const lastError = page.getByTestId("last-error");
  await lastError.waitFor({ timeout: 15_000 });
  assert.ok((await lastError.innerText()).trim().length > 0);
  await screenshot(page, "status-hub-down");
  assert.equal(await page.evaluate(() => (globalThis as Record<string, unknown>).stayed), true);

  // This endpoint's own page still works without the hub, and says what is wrong.
  await goTo(page, `#/m/${MESH}/endpoints/${root.endpointId}`, /^Endpoint root-ep/);
  await page.getByText(`Hub link of ${MESH} is down.`).waitFor();
  await page.locator("#services .empty").waitFor();
  await page.locator("#log .empty").waitFor();
  await screenshot(page, "endpoint-hub-down");

  assert.deepEqual(b.unexpectedErrors(), []);
});
