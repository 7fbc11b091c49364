/**
 * What a new user tripped on in the dashboard, fixed and driven in a real
 * browser against real processes:
 *
 * - broken port mappings say so: each mapping and service shows its live
 *   state (ok, nobody offers it, no provider online, not allowed, target
 *   refusing) with the last error and its time, open connections and bytes;
 *   making a mapping to a name nobody offers warns;
 * - `tcp/ssh` and `ssh` both work; the mapping form picks from the services
 *   this user may use, with their providers' state; an empty port says "Port
 *   is required"; each screen says what a service and a port mapping are;
 * - rough edges: no forms (and no polling refusals) on another user's
 *   endpoint, the audit log in words with endpoint names, deletes that ask
 *   first, times with their zone and "ago", copy buttons, a masked private
 *   key, no ghost endpoint after a leave and rejoin, the sign-in page names
 *   `ztm dashboard`, and the join screen's error in words.
 *
 * Screenshots of the new states go to `.ci/out/screenshots/` at 1280 and 390 px.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { api, eventually, Harness, issueUser, joinMesh } from "../fixtures/harness.ts";
import {
  addService,
  endpointPath,
  MESH,
  never,
  startMeshOf,
  waitConnected,
} from "../fixtures/mesh_fixture.ts";
import { freePort, openConnection, randomBytes, startEchoServer } from "../fixtures/net_helpers.ts";
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

/** Photographs the screen at `hash` at 390 px (the wide shot is taken by the test), layout checked. */
async function narrowShot(
  b: TestBrowser,
  agentUrl: string,
  hash: string,
  heading: RegExp,
  ready: string,
  name: string,
): Promise<void> {
  const page = await b.signIn(agentUrl, NARROW);
  await goTo(page, hash, heading);
  await page.locator(ready).first().waitFor({ timeout: 15_000 });
  await screenshot(page, name);
  assert.deepEqual(await layoutProblems(page), [], `${name} at 390 px`);
  await page.context().close();
}

/** The text of the port mapping row for `port`. */
function portRow(page: Page, port: number) {
  return page.locator(`tr[data-port="${port}"]`);
}

Deno.test("port mappings and services show their live state; a mapping nobody can serve warns; the form picks usable services", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  await using echo = await startEchoServer();
  const deadPort = await freePort();
  await addService(bob, "ssh", echo.port, ["alice"]);
  await addService(bob, "secret", echo.port, []);
  await addService(bob, "web", deadPort, ["*"]);
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  const own = `#/m/${MESH}/endpoints/${alice.endpointId}`;
  await goTo(page, own, /^Endpoint alice-ep/);

  // Each list says what it is.
  const services = page.getByRole("region", { name: "Services" });
  const mappings = page.getByRole("region", { name: "Port mappings" });
  assert.match(await services.locator(".explain").innerText(), /^A service offers a host:port/);
  assert.match(await mappings.locator(".explain").innerText(), /^A port mapping opens a port/);

  // The picker offers what alice may use (not bob's "secret"), with the providers' state.
  const form = page.getByRole("form", { name: "Add a port mapping" });
  const picker = form.getByLabel("Service", { exact: true });
  await form.locator("option", { hasText: "tcp/web of bob" }).waitFor({
    state: "attached",
    timeout: 15_000,
  });
  const options = await picker.locator("option").allInnerTexts();
  assert.deepEqual(options, [
    "Choose a service…",
    "tcp/ssh of bob — 1 of 1 provider online",
    "tcp/web of bob — 1 of 1 provider online",
    "Another name (nobody offers it yet)…",
  ]);

  // An empty port says so in words, and nothing is sent.
  await picker.selectOption({ label: "tcp/ssh of bob — 1 of 1 provider online" });
  await form.getByRole("button", { name: "Add port mapping" }).click();
  assert.equal(await form.getByRole("alert").innerText(), "Port is required");

  // ssh through the picker: works; a connection stays open with bytes both ways.
  const sshPort = await freePort();
  await form.getByLabel("Port", { exact: true }).fill(String(sshPort));
  await form.getByRole("button", { name: "Add port mapping" }).click();
  await form.getByRole("status").filter({ hasText: "now leads to tcp/ssh" }).waitFor();
  const conn = await openConnection(sshPort);
  assert.equal((await conn.exchange(randomBytes(3000))).length, 3000);

  // A mistyped name, as "tcp/…": made, with a warning that says nobody offers it.
  const typoPort = await freePort();
  await picker.selectOption({ label: "Another name (nobody offers it yet)…" });
  await form.getByLabel("Service name").fill("tcp/shh");
  await form.getByLabel("Port", { exact: true }).fill(String(typoPort));
  await form.getByRole("button", { name: "Add port mapping" }).click();
  const warning = form.locator(".warning");
  await warning.waitFor();
  assert.equal(await warning.innerText(), "It cannot work yet: Nobody offers a service tcp/shh.");
  const typoMapping = await api(alice.url, "GET", endpointPath(alice.endpointId, "ports"));
  assert.ok(
    typoMapping.body.some((p: { port: number; target: { service: string } }) =>
      p.port === typoPort && p.target.service === "shh"
    ),
    "stored as the name without tcp/",
  );

  // "secret" by its bare name: not allowed. "web": the target refuses once a client connects.
  const secretPort = await freePort();
  const webPort = await freePort();
  for (const [port, name] of [[secretPort, "secret"], [webPort, "web"]] as const) {
    await picker.selectOption({ label: "Another name (nobody offers it yet)…" });
    await form.getByLabel("Service name").fill(name);
    await form.getByLabel("Port", { exact: true }).fill(String(port));
    await form.getByRole("button", { name: "Add port mapping" }).click();
    await portRow(page, port).waitFor();
  }
  for (const port of [webPort, secretPort]) {
    const refused = await openConnection(port);
    await refused.ended;
    refused.close();
  }

  const state = (port: number) => portRow(page, port).locator(".state");
  await state(sshPort).locator(".badge.on", { hasText: "ok" }).waitFor({ timeout: 15_000 });
  await eventually(
    async () => (await portRow(page, sshPort).innerText()).includes("1 open"),
    15_000,
    "the open connection counted",
  );
  assert.match(await portRow(page, sshPort).innerText(), /2\.9 KiB up, 2\.9 KiB down/);
  assert.match(await state(typoPort).innerText(), /nobody offers it\s+Nobody offers a service/);
  assert.match(
    await state(secretPort).innerText(),
    /not allowed\s+User "alice" may not use tcp\/secret of "bob"/,
  );
  await state(webPort).locator(".badge.off", { hasText: "target refusing" }).waitFor({
    timeout: 15_000,
  });
  const webText = await state(webPort).innerText();
  assert.match(webText, /Service tcp\/web target 127\.0\.0\.1:\d+ is unreachable/);
  assert.match(webText, /Last error \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \((just now|\d+ min ago)\)/);
  await screenshot(page, "endpoint-port-states");
  assert.deepEqual(await layoutProblems(page), []);

  // The service form takes "tcp/NAME" too, and an empty target port says so.
  const svcForm = page.getByRole("form", { name: "Add a service" });
  await svcForm.getByLabel("Name").fill("tcp/echo");
  await svcForm.getByRole("button", { name: "Add service" }).click();
  assert.equal(await svcForm.getByRole("alert").innerText(), "Target port is required");
  await svcForm.getByLabel("Target port").fill(String(echo.port));
  await svcForm.getByRole("button", { name: "Add service" }).click();
  await page.locator('tr[data-service="echo"]').waitFor();
  await page.locator('tr[data-service="echo"] .badge.on', { hasText: "ok" }).waitFor();

  // On bob's side, his services' states: web's target refuses, secret refused alice.
  const bobPage = await b.signIn(bob.url, WIDE);
  await goTo(bobPage, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  const bobRow = (name: string) => bobPage.locator(`tr[data-service="${name}"]`);
  await bobRow("web").locator(".badge.off", { hasText: "target refusing" }).waitFor();
  assert.match(await bobRow("ssh").innerText(), /1 open, 1 in all\s+2\.9 KiB up, 2\.9 KiB down/);
  assert.match(await bobRow("secret").innerText(), /User "alice" may not use service tcp\/secret/);
  await screenshot(bobPage, "endpoint-service-states");
  await narrowShot(
    b,
    bob.url,
    `#/m/${MESH}/endpoints/${bob.endpointId}`,
    /^Endpoint bob-ep/,
    'tr[data-service="web"] .badge.off',
    "endpoint-service-states",
  );

  // The services screen: the sentences, and "secret" marked as not open to alice, with no map button.
  await goTo(page, `#/m/${MESH}/services`, `Services of ${MESH}`);
  const secretRow = page.locator('li[data-service="secret"]');
  await secretRow.locator(".badge.off", { hasText: "not open to alice" }).waitFor();
  assert.equal(await secretRow.getByRole("button").count(), 0);
  assert.match(await secretRow.innerText(), /Only bob, root may use it; ask bob to add alice/);
  assert.match(await page.locator(".explain").innerText(), /A service offers .* A port mapping/);
  // Its one-step map form also says "Local port is required" for an empty port.
  const sshRow = page.locator('li[data-service="ssh"]');
  await sshRow.getByRole("button", { name: "Map a local port to this" }).click();
  await sshRow.getByRole("button", { name: "Map port" }).click();
  assert.equal(await sshRow.getByRole("alert").innerText(), "Local port is required");
  await screenshot(page, "services-not-allowed");
  assert.deepEqual(await layoutProblems(page), []);
  await narrowShot(
    b,
    alice.url,
    `#/m/${MESH}/services`,
    /^Services of/,
    'li[data-service="secret"] .badge.off',
    "services-not-allowed",
  );
  await narrowShot(
    b,
    alice.url,
    own,
    /^Endpoint alice-ep/,
    `tr[data-port="${webPort}"] .badge.off`,
    "endpoint-port-states",
  );
  conn.close();

  assert.deepEqual(b.unexpectedErrors([400]), []);
});

Deno.test("another user's endpoint explains itself once; root's changes read as words; deletes ask; copy, masked key, no ghost after rejoin", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["root", "alice", "bob"]);
  const { root, alice, bob } = m.agents;
  await using echo = await startEchoServer();
  await using b = await openBrowser();

  // alice on bob's endpoint: one explanation, no forms, and no requests for bob's lists.
  const asked: string[] = [];
  const alicePage = await b.signIn(alice.url, WIDE);
  alicePage.on("request", (req) => asked.push(new URL(req.url()).pathname));
  await addService(bob, "ssh", echo.port, ["alice"]);
  await goTo(alicePage, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  const note = alicePage.getByTestId("not-yours");
  await note.waitFor({ timeout: 15_000 });
  assert.match(
    await note.innerText(),
    /acts as alice\. Only bob \(this endpoint's user\) and root/,
  );
  assert.equal(await alicePage.getByRole("form").count(), 0);
  assert.equal(await alicePage.getByRole("alert").count(), 0);
  await alicePage.getByText("It offers tcp/ssh").waitFor({ timeout: 15_000 });
  await screenshot(alicePage, "endpoint-not-yours");
  assert.deepEqual(await layoutProblems(alicePage), []);
  await never(
    () => asked.some((p) => /\/endpoints\/[^/]+\/(services|ports|log)$/.test(p)),
    2_500,
    "a request for bob's lists",
  );
  await narrowShot(
    b,
    alice.url,
    `#/m/${MESH}/endpoints/${bob.endpointId}`,
    /^Endpoint bob-ep/,
    '[data-testid="not-yours"]',
    "endpoint-not-yours",
  );

  // root adds a service on bob's endpoint; bob's audit log reads it in words, naming root's endpoint.
  const page = await b.signIn(root.url, WIDE);
  await b.browser.contexts()[b.browser.contexts().length - 1].grantPermissions(
    ["clipboard-read", "clipboard-write"],
    { origin: root.url },
  );
  await goTo(page, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  const svcForm = page.getByRole("form", { name: "Add a service" });
  await svcForm.getByLabel("Name").fill("web");
  await svcForm.getByLabel("Target host").fill("10.0.0.5");
  await svcForm.getByLabel("Target port").fill("22");
  await svcForm.getByLabel("Also open to").fill("alice");
  await svcForm.getByRole("button", { name: "Add service" }).click();
  await page.locator('tr[data-service="web"]').waitFor();
  const log = page.getByRole("region", { name: "Audit log" });
  const entry = log.locator("tbody tr").first();
  await eventually(
    async () => (await entry.innerText()).includes("root added service tcp/web"),
    15_000,
    "root's change in bob's log",
  );
  const words = await entry.innerText();
  assert.match(words, /root added service tcp\/web → 10\.0\.0\.5:22, open to alice/);
  await eventually(
    async () => (await entry.innerText()).includes("root-ep"),
    15_000,
    "from root-ep",
  );
  assert.match(words, /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \((just now|\d+ min ago)\)/);
  assert.match(words, /done/);

  // Deleting asks first: Cancel keeps it, "Yes, delete" deletes it.
  await page.getByRole("button", { name: "Delete service tcp/web" }).click();
  const confirm = page.getByRole("group", { name: "Confirm: Delete service tcp/web" });
  await confirm.waitFor();
  assert.match(
    await confirm.innerText(),
    /Delete service tcp\/web\? Nobody can reach 10\.0\.0\.5:22/,
  );
  await screenshot(page, "delete-confirm");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "detached" });
  assert.equal(
    (await api(bob.url, "GET", endpointPath(bob.endpointId, "services"))).body.length,
    2,
  );
  await page.getByRole("button", { name: "Delete service tcp/web" }).click();
  await confirm.getByRole("button", { name: "Yes, delete" }).click();
  await page.locator('tr[data-service="web"]').waitFor({ state: "detached" });
  await eventually(
    async () =>
      (await entry.innerText()).includes("root deleted service tcp/web (it led to 10.0.0.5:22"),
    15_000,
    "the delete in words",
  );
  await screenshot(page, "audit-words");
  assert.deepEqual(await layoutProblems(page), []);
  await narrowShot(
    b,
    root.url,
    `#/m/${MESH}/endpoints/${bob.endpointId}`,
    /^Endpoint bob-ep/,
    "#log tbody tr",
    "audit-words",
  );

  // Copy buttons: the endpoint id lands on the clipboard.
  await page.getByRole("button", { name: "Copy endpoint id" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), bob.endpointId);

  // bob switches remote management off: root's page shows one refusal and stops asking.
  const off = await api(bob.url, "PUT", `/api/meshes/${MESH}/policy`, { remoteManagement: false });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  const rootAsked: string[] = [];
  page.on("request", (req) => rootAsked.push(new URL(req.url()).pathname));
  await page.reload();
  await goTo(page, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  await page.getByRole("region", { name: "Not manageable" }).waitFor({ timeout: 15_000 });
  assert.equal(await page.getByRole("alert").count(), 1);
  assert.match(await page.getByRole("alert").innerText(), /Remote management is switched off/);
  await screenshot(page, "endpoint-refused-once");
  const listAsks = () => rootAsked.filter((p) => /\/(services|ports|log)$/.test(p)).length;
  const before = listAsks();
  await never(() => listAsks() > before, 3_000, "polling after the refusal");

  // The private key is masked in the join form.
  await goTo(page, "#/join", /^Join a mesh$/);
  const security = await page.locator("#join-privateKey-text").evaluate((el) =>
    getComputedStyle(el).getPropertyValue("-webkit-text-security")
  );
  assert.equal(security, "disc");
  await page.locator("#join-privateKey-text").fill(root.files.privateKey);
  await screenshot(page, "join-key-masked");
  await page.getByLabel("Show the key").check();
  assert.equal(
    await page.locator("#join-privateKey-text").evaluate((el) =>
      getComputedStyle(el).getPropertyValue("-webkit-text-security")
    ),
    "none",
  );

  // Leave and rejoin under the same name: one root-ep, not a ghost beside it.
  const left = await api(root.url, "DELETE", `/api/meshes/${MESH}`);
  assert.equal(left.status, 200);
  const rejoined = await joinMesh(root.url, MESH, root.files, m.hub.address, "root-ep");
  assert.notEqual(rejoined.endpoint.id, root.endpointId);
  await waitConnected(root);
  const listPage = await b.signIn(root.url, WIDE);
  await goTo(listPage, `#/m/${MESH}/endpoints`, `Endpoints of ${MESH}`);
  await listPage.locator('tr[data-endpoint="bob-ep"]').waitFor({ timeout: 15_000 });
  assert.equal(await listPage.locator('tr[data-endpoint="root-ep"]').count(), 1);
  const listed = await api(root.url, "GET", `/api/meshes/${MESH}/endpoints?q=root-ep`);
  assert.deepEqual(
    listed.body.items.map((e: { id: string; online: boolean }) => [e.id, e.online]),
    [[rejoined.endpoint.id, true]],
  );
  await screenshot(listPage, "endpoints-after-rejoin");

  assert.deepEqual(b.unexpectedErrors([403]), []);
});

Deno.test("the sign-in page suggests ztm dashboard with copy buttons; the join screen says why the hub is not reached", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const alice = await issueUser(ca.url, "alice");
  const agent = await h.startAgent();
  await using b = await openBrowser();

  for (const viewport of [WIDE, NARROW]) {
    const page = await b.newPage(viewport);
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], {
      origin: agent.url,
    });
    assert.equal((await page.goto(agent.url))?.status(), 401);
    const main = page.locator("main");
    assert.match(await main.innerText(), /on this machine, run\s+ztm dashboard/);
    await screenshot(page, "signed-out");
    assert.deepEqual(await layoutProblems(page), []);
    await page.getByRole("button", { name: "Copy command ztm dashboard" }).click();
    await page.getByRole("button", { name: "Copy command ztm dashboard" }).filter({
      hasText: "Copied",
    }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "ztm dashboard");
    await page.context().close();
  }

  // A hub address where nothing answers: the join is kept, and the form says what the link met.
  const dead = await freePort();
  const page = await b.signIn(agent.url, WIDE);
  await page.getByRole("heading", { name: "Welcome to ztm" }).waitFor();
  await goTo(page, "#/join", /^Join a mesh$/);
  await submitJoinForm(page, MESH, `127.0.0.1:${dead}`, alice);
  await page.getByRole("status").filter({ hasText: "Connecting to the hub" }).waitFor();
  const alert = page.getByRole("alert").filter({ hasText: "Hub not reached" });
  await alert.waitFor({ timeout: 30_000 });
  const text = await alert.innerText();
  assert.match(text, /Joined test, but its hub link is not up: .*(refused|ECONNREFUSED)/i);
  assert.match(text, /The agent keeps trying/);
  await screenshot(page, "join-hub-not-reached");
  assert.deepEqual(await layoutProblems(page), []);

  assert.deepEqual(b.unexpectedErrors([401]), []);
});
