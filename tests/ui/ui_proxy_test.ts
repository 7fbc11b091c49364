/**
 * The dashboard's proxy control (issue 21): the status card turns the mesh's
 * proxy on at a chosen loopback address, shows where it listens with a
 * command to copy, refuses a non-loopback address in words, and turns it off.
 */
import assert from "node:assert/strict";
import { curl, startHttp } from "../../agent/proxy/_fixture.ts";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import { addService, MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";
import { goTo, openBrowser, screenshot, WIDE } from "../fixtures/ui_browser.ts";

Deno.test("the status card turns the proxy on and off, and says why an address is refused", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  await using web = startHttp("web");
  await addService(m.agents.bob, "web", web.port, ["alice"]);
  const alice = m.agents.alice;
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  await goTo(page, "#/", "Status");
  const card = page.locator(`[data-mesh="${MESH}"] [data-testid="proxy"]`);
  await card.getByText("Off.").waitFor({ timeout: 15_000 });

  const listen = card.getByLabel("Listen on");
  await listen.fill("0.0.0.0:1080");
  await card.getByRole("button", { name: "Turn proxy on" }).click();
  await card.getByRole("alert").getByText(/listens on loopback only/).waitFor();

  const port = await freePort();
  await listen.fill(`127.0.0.1:${port}`);
  await card.getByRole("button", { name: "Turn proxy on" }).click();
  await card.getByTestId("proxy-on").getByText(`127.0.0.1:${port}`, { exact: true }).waitFor();
  await screenshot(page, "status-proxy-on");
  const got = await eventually(
    async () => {
      const r = await curl(["--socks5-hostname", `127.0.0.1:${port}`, "http://web.mesh/ui"]);
      return r.code === 0 ? r.out : null;
    },
    15_000,
    "web.mesh through the proxy the dashboard turned on",
  );
  assert.equal(got, "hello from web /ui\n");

  // The Services screen names each service as the proxy reaches it.
  await goTo(page, `#/m/${MESH}/services`, `Services of ${MESH}`);
  await page.locator('[data-service="web"] .proxy-name code').getByText("web.mesh", { exact: true })
    .waitFor({ timeout: 15_000 });
  await goTo(page, "#/", "Status");
  await card.getByRole("button", { name: "Turn proxy off" }).click();
  await card.getByText("Off.").waitFor();
  const status = await api(alice.url, "GET", `/api/meshes/${MESH}/proxy`);
  assert.equal(status.body.enabled, false);
  assert.deepEqual(b.unexpectedErrors([400]), []); // the refused 0.0.0.0 on purpose
});
