/**
 * The endpoints screen against a hub holding thousands of endpoints: it loads
 * and searches with every request one page in size (the browser never asks
 * for the whole mesh), and pages through the list.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Request as PwRequest } from "playwright-core";
import { Harness, issueUser } from "../fixtures/harness.ts";
import { MESH, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";

const SIMULATED = 2_000;
/** Must match `ENDPOINTS_PAGE_SIZE` in ui/views/endpoints.tsx. */
const PAGE = 50;

Deno.test(`the endpoints screen pages and searches ${SIMULATED} endpoints one page per request`, async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  // One user ("sim") holds every simulated session: above the hub's per-user defaults.
  const hub = await h.startHub(ca, {
    args: [`--max-sessions-per-user=${SIMULATED * 2}`, `--max-endpoints-per-user=${SIMULATED * 2}`],
  });
  const root = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "root"));
  const sim = await issueUser(ca.url, "sim");
  const dir = await h.tempDir("ztm-sim-");
  Deno.writeTextFileSync(join(dir, "ca.crt"), sim.ca);
  Deno.writeTextFileSync(join(dir, "user.crt"), sim.certificate);
  Deno.writeTextFileSync(join(dir, "user.key"), sim.privateKey, { mode: 0o600 });
  const simProc = h.spawn("sim", "tests/fixtures/ui_sim_endpoints.ts", [
    `--port=${hub.port}`,
    `--count=${SIMULATED}`,
    `--files=${dir}`,
  ]);
  await simProc.waitForLog((l) => l.msg === "ready", 120_000);
  const total = SIMULATED + 1;

  await using b = await openBrowser();
  const page = await b.signIn(root.url, WIDE);
  const asked: { url: URL; items: number }[] = [];
  page.on("requestfinished", async (req: PwRequest) => {
    const url = new URL(req.url());
    if (!url.pathname.startsWith(`/api/meshes/${MESH}/endpoints`)) return;
    const res = await req.response();
    const body = await res?.json().catch(() => undefined);
    asked.push({ url, items: body?.items?.length ?? 0 });
  });

  await goTo(page, `#/m/${MESH}/endpoints`, `Endpoints of ${MESH}`);
  const range = page.locator(".pager .range");
  await page.getByText(`1–${PAGE} of ${total.toLocaleString("en")}`).waitFor({ timeout: 15_000 });
  assert.equal(await page.locator("tbody tr").count(), PAGE);
  await screenshot(page, "endpoints-many");

  await page.getByRole("button", { name: "Next →" }).click();
  await page.getByText(`${PAGE + 1}–${2 * PAGE} of ${total.toLocaleString("en")}`).waitFor();
  assert.equal(await page.locator("tbody tr").first().getAttribute("data-endpoint"), "sim-00049");

  // Search: sim-001xx is 100 endpoints, shown 50 at a time.
  await page.getByLabel("Search endpoints").fill("sim-001");
  await page.getByText(`1–${PAGE} of 100`).waitFor({ timeout: 10_000 });
  const names = await page.locator("tbody tr").evaluateAll((rows) =>
    rows.map((r) => r.getAttribute("data-endpoint") ?? "")
  );
  assert.equal(names.length, PAGE);
  assert.ok(names.every((n) => n.startsWith("sim-001")), names.join(","));
  assert.match(page.url(), /q=sim-001/);

  // Every list request asked for one page and got at most one page.
  const lists = asked.filter((a) => a.url.pathname === `/api/meshes/${MESH}/endpoints`);
  assert.ok(lists.length >= 3, `saw ${lists.length} list requests`);
  for (const a of lists) {
    assert.equal(a.url.searchParams.get("limit"), String(PAGE), a.url.href);
    assert.ok(a.items <= PAGE, `${a.url.href} returned ${a.items} rows`);
  }
  assert.ok(lists.some((a) => a.url.searchParams.get("q") === "sim-001"), "a search request");
  assert.ok(
    lists.some((a) => a.url.searchParams.get("offset") === String(PAGE)),
    "a page 2 request",
  );
  await range.first().waitFor();

  // The narrow layout holds a long list too.
  const narrow = await b.signIn(root.url, NARROW);
  await goTo(narrow, `#/m/${MESH}/endpoints`, `Endpoints of ${MESH}`);
  await narrow.getByText(`1–${PAGE} of ${total.toLocaleString("en")}`).waitFor({ timeout: 15_000 });
  assert.deepEqual(await layoutProblems(narrow), []);

  assert.deepEqual(b.unexpectedErrors(), []);
});
