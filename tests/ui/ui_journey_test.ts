/**
 * The dashboard's first-run journey in a real browser against real
 * processes: a CA, a hub, agent B (bob, joined through its API) and agent A
 * (root, not joined). On A's page the test joins by uploading the three
 * files, sees both endpoints online, creates a service on B from A's page,
 * maps a port on A to it from the services screen, fetches through that port,
 * then deletes both from the page. On the way it photographs every screen at
 * 1280 and 390 px and checks their layout.
 */
import assert from "node:assert/strict";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { endpointPath, MESH, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  submitJoinForm,
  type TestBrowser,
  WIDE,
} from "../fixtures/ui_browser.ts";

const GREETING = "hello through ztm";

/** An HTTP server on loopback port 0 that answers every request with {@link GREETING}. */
function startWebServer() {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(GREETING),
  );
  return {
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** GETs `http://127.0.0.1:port/`; the body, or undefined when nothing answers. */
async function fetchThrough(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

/** Visits each screen at the page's width: screenshot and layout check. */
async function tourScreens(
  b: TestBrowser,
  agentUrl: string,
  viewport: { width: number; height: number },
  screens: { name: string; hash: string; heading: RegExp; ready: string[] }[],
): Promise<void> {
  const page = await b.signIn(agentUrl, viewport);
  for (const s of screens) {
    await goTo(page, s.hash, s.heading);
    for (const selector of s.ready) await page.locator(selector).first().waitFor();
    await screenshot(page, s.name);
    assert.deepEqual(await layoutProblems(page), [], `${s.name} at ${viewport.width}px`);
  }
  await page.context().close();
}

Deno.test("first run in the browser: join by upload, serve on B from A, map a port on A, fetch through it, delete both", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const bob = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "bob"));
  const root = await issueUser(ca.url, "root");
  const a = await h.startAgent({ name: "agent-root" });
  await using web = startWebServer();
  await using b = await openBrowser();

  // First run: the dashboard greets with the join form.
  const page = await b.signIn(a.url, WIDE);
  await page.getByRole("heading", { name: "Welcome to ztm" }).waitFor();
  await screenshot(page, "welcome");
  assert.deepEqual(await layoutProblems(page), []);

  await page.getByLabel("Endpoint name").fill("root-ep");
  await submitJoinForm(page, MESH, hub.address, root);

  // Both endpoints online, without a reload.
  await page.getByRole("heading", { name: `Endpoints of ${MESH}` }).waitFor();
  await page.locator('tr[data-endpoint="root-ep"] .badge.on').waitFor({ timeout: 15_000 });
  await page.locator('tr[data-endpoint="bob-ep"] .badge.on').waitFor({ timeout: 15_000 });
  const joined = await api(a.url, "GET", `/api/meshes/${MESH}`);
  assert.equal(joined.status, 200);
  const aId: string = joined.body.endpoint.id;

  // A service on B, created from A's page (signed by root, applied by B).
  await page.locator('tr[data-endpoint="bob-ep"] a').click();
  await page.getByRole("heading", { name: /^Endpoint bob-ep/ }).waitFor();
  const services = page.getByRole("form", { name: "Add a service" });
  await services.getByLabel("Name").fill("web");
  await services.getByLabel("Target host").fill("127.0.0.1");
  await services.getByLabel("Target port").fill(String(web.port));
  await services.getByRole("button", { name: "Add service" }).click();
  await page.locator('tr[data-service="web"]').waitFor();
  const onB = await api(bob.url, "GET", endpointPath(bob.endpointId, "services"));
  assert.deepEqual(onB.body.map((s: { name: string }) => s.name), ["web"]);

  // B's policy lets remote callers listen on loopback only: the refusal shows inline.
  const ports = page.getByRole("form", { name: "Add a port mapping" });
  await ports.getByLabel("Listen address").fill("0.0.0.0");
  await ports.getByLabel("Port", { exact: true }).fill(String(await freePort()));
  await ports.getByLabel("Service", { exact: true }).selectOption({
    label: "tcp/web of bob — 1 of 1 provider online",
  });
  await ports.getByRole("button", { name: "Add port mapping" }).click();
  const refused = ports.getByRole("alert");
  await refused.waitFor();
  const refusal = await refused.innerText();
  assert.match(refusal, /403/);
  assert.match(refusal, /listen/i);
  const bobPorts = await api(bob.url, "GET", endpointPath(bob.endpointId, "ports"));
  assert.deepEqual(bobPorts.body, [], "the refused mapping was not made");

  // From the services screen, one step: map a local port on A to B's service.
  await goTo(page, `#/m/${MESH}/services`, `Services of ${MESH}`);
  const row = page.locator('li[data-service="web"]');
  await row.locator(".badge.on").waitFor({ timeout: 15_000 });
  await row.getByRole("button", { name: "Map a local port to this" }).click();
  const port = await freePort();
  await row.getByLabel("Local port on 127.0.0.1").fill(String(port));
  await row.getByRole("button", { name: "Map port" }).click();
  await row.getByRole("status").waitFor();
  assert.equal(
    await eventually(() => fetchThrough(port), 10_000, "a fetch through the mapped port"),
    GREETING,
  );

  // Every screen, at both widths, with content in it.
  const screens = [
    { name: "status", hash: "#/", heading: /^Status$/, ready: ["[data-mesh]"] },
    {
      name: "endpoints",
      hash: `#/m/${MESH}/endpoints`,
      heading: /^Endpoints of/,
      ready: ['tr[data-endpoint="bob-ep"]', 'tr[data-endpoint="root-ep"]'],
    },
    {
      name: "endpoint-remote",
      hash: `#/m/${MESH}/endpoints/${bob.endpointId}`,
      heading: /^Endpoint bob-ep/,
      ready: ['tr[data-service="web"]', "#ports .empty", "#log tbody tr"],
    },
    {
      name: "endpoint-self",
      hash: `#/m/${MESH}/endpoints/${aId}`,
      heading: /^Endpoint root-ep/,
      ready: ["#services .empty", `tr[data-port="${port}"]`, "#log tbody tr"],
    },
    {
      name: "services",
      hash: `#/m/${MESH}/services`,
      heading: /^Services of/,
      ready: ['li[data-service="web"]'],
    },
    { name: "join", hash: "#/join", heading: /^Join a mesh$/, ready: ["#join-mesh"] },
  ];
  await tourScreens(b, a.url, WIDE, screens);
  await tourScreens(b, a.url, NARROW, screens);

  // Delete the mapping on A, then the service on B, from the page.
  await goTo(page, `#/m/${MESH}/endpoints/${aId}`, /^Endpoint root-ep/);
  await page.getByRole("button", { name: `Delete port mapping 127.0.0.1:${port}` }).click();
  await page.getByRole("button", { name: "Yes, delete" }).click();
  await page.locator(`tr[data-port="${port}"]`).waitFor({ state: "detached" });
  assert.deepEqual((await api(a.url, "GET", endpointPath(aId, "ports"))).body, []);
  await eventually(async () => (await fetchThrough(port)) === undefined, 10_000, "the port closed");

  await goTo(page, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  await page.getByRole("button", { name: "Delete service tcp/web" }).click();
  await page.getByRole("button", { name: "Yes, delete" }).click();
  await page.locator('tr[data-service="web"]').waitFor({ state: "detached" });
  assert.deepEqual((await api(bob.url, "GET", endpointPath(bob.endpointId, "services"))).body, []);

  // B's audit log, read from A's page, says in words that root acted from A (root-ep).
  const log = page.getByRole("region", { name: "Audit log" });
  await eventually(
    async () => (await log.innerText()).includes("root deleted service tcp/web"),
    10_000,
    "the delete in B's audit log",
  );
  await eventually(async () => (await log.innerText()).includes("root-ep"), 10_000, "A's name");
  const logText = await log.innerText();
  assert.match(logText, new RegExp(`root added service tcp/web → 127\\.0\\.0\\.1:${web.port}`));
  assert.match(logText, /root tried to map port 0\.0\.0\.0:\d+ → tcp\/web of bob/);

  // Leaving asks first; Cancel keeps the mesh, confirming leaves it.
  await goTo(page, "#/", /^Status$/);
  await page.getByRole("button", { name: "Leave mesh…" }).click();
  const confirm = page.getByRole("group", { name: `Confirm leaving mesh ${MESH}` });
  await confirm.waitFor();
  await screenshot(page, "leave-confirm");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "detached" });
  assert.equal((await api(a.url, "GET", "/api/meshes")).body.length, 1);
  await page.getByRole("button", { name: "Leave mesh…" }).click();
  await page.getByRole("button", { name: `Yes, leave ${MESH}` }).click();
  await page.getByRole("heading", { name: "Welcome to ztm" }).waitFor();
  assert.deepEqual((await api(a.url, "GET", "/api/meshes")).body, []);

  assert.deepEqual(b.unexpectedErrors([403]), []);
});
