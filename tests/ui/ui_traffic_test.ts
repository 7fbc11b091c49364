/**
 * Traffic on the endpoint screen, in a real browser against real processes:
 * each port mapping and service shows its open connections and bytes each
 * way, and a small SVG sparkline of the last minute's rates that moves as
 * bytes flow, fed by the screen's polling of the agent's API.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { eventually, Harness } from "../fixtures/harness.ts";
import { addPortMapping, addService, MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort, openConnection, randomBytes, startEchoServer } from "../fixtures/net_helpers.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";

/** The sparkline of a row: points drawn, its peak (bytes/s), the up line, its words. */
function spark(page: Page, row: string) {
  return page.locator(row).locator("svg.spark").evaluate(
    (svg) => ({
      points: Number(svg.getAttribute("data-points")),
      peak: Number(svg.getAttribute("data-peak")),
      up: svg.querySelector(".spark-up")?.getAttribute("points") ?? "",
      label: svg.getAttribute("aria-label") ?? "",
    }),
    undefined,
    { timeout: 2_000 },
  );
}

Deno.test("the endpoint screen shows each mapping's and service's traffic, with a sparkline that moves as bytes flow", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  await using echo = await startEchoServer();
  await addService(bob, "echo", echo.port, ["alice"]);
  const mapped = await freePort();
  await addPortMapping(alice, mapped, "echo");
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  await goTo(page, `#/m/${MESH}/endpoints/${alice.endpointId}`, /^Endpoint alice-ep/);
  const row = `tr[data-port="${mapped}"]`;
  await page.locator(row).waitFor({ timeout: 15_000 });

  // Quiet: no connection yet, a flat line once two polls have been seen.
  const traffic = page.locator(row).locator(".traffic");
  assert.match(await traffic.innerText(), /^0 open, 0 in all\s+0 B up, 0 B down/);
  const quiet = await eventually(
    async () => {
      const s = await spark(page, row);
      return s.points >= 2 ? s : undefined;
    },
    15_000,
    "two points on the sparkline",
  );
  assert.equal(quiet.peak, 1, "no traffic: the scale's floor");
  assert.match(quiet.label, /^Traffic of port 127\.0\.0\.1:\d+: now 0 B\/s up, 0 B\/s down/);

  // 512 KiB each way through one connection that stays open.
  const SENT = 512 * 1024;
  const conn = await openConnection(mapped);
  assert.equal((await conn.exchange(randomBytes(SENT))).length, SENT);
  await eventually(
    async () =>
      /^1 open, 1 in all\s+512\.0 KiB up, 512\.0 KiB down/.test(await traffic.innerText()),
    15_000,
    "the figures of the open connection",
  );
  const busy = await eventually(
    async () => {
      const s = await spark(page, row);
      return s.peak > 1024 ? s : undefined;
    },
    15_000,
    "the sparkline's peak rising",
  );
  assert.notEqual(busy.up, quiet.up, "the up line moved");
  await screenshot(page, "traffic");

  // Bob's screen shows the same bytes on his service.
  const bobPage = await b.signIn(bob.url, NARROW);
  await goTo(bobPage, `#/m/${MESH}/endpoints/${bob.endpointId}`, /^Endpoint bob-ep/);
  const service = 'tr[data-service="echo"]';
  await eventually(
    async () =>
      /^1 open, 1 in all\s+512\.0 KiB up, 512\.0 KiB down/.test(
        await bobPage.locator(service).locator(".traffic").innerText(),
      ),
    15_000,
    "bob's service figures",
  );
  await bobPage.locator(service).locator("svg.spark").waitFor();
  assert.deepEqual(await layoutProblems(bobPage), [], "the endpoint screen at 390 px");

  // The connection ends: none open, and the rate falls back to 0 at the next poll.
  conn.close();
  await eventually(
    async () => /^0 open, 1 in all/.test(await traffic.innerText()),
    15_000,
    "the connection counted closed",
  );
  await eventually(
    async () => / now 0 B\/s up, 0 B\/s down; peak /.test((await spark(page, row)).label),
    15_000,
    "the rate back to 0",
  );
  assert.deepEqual(b.unexpectedErrors(), []);
});
