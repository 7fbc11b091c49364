/**
 * The dashboard's half of its session, in a real browser: a fresh login's
 * secret moves from the page's `<meta>` into this origin's storage, the spent
 * login address becomes `/` (the screen's hash kept), every API call carries
 * the secret, a later page of the same origin finds it, and a page whose
 * storage is switched off keeps it in memory.
 */
import assert from "node:assert/strict";
import { SESSION_HEADER } from "@ztm/shared/agent_paths";
import type { Page } from "playwright-core";
import { serveModulePage, uiModule } from "./_fixture.ts";

/** Adopts, calls the API once, and reports what it saw in `window.seen`. */
const ENTRY = `
import { adoptSession, SESSION_META, sessionHeaders } from "${uiModule("session.ts")}";
import { callApi } from "${uiModule("api_client.ts")}";
const before = sessionHeaders();
adoptSession();
const answer = await callApi("GET", "/api/echo");
let stored = null;
try { stored = localStorage.getItem("ztm-session"); } catch { stored = "storage off"; }
Object.assign(window, { seen: {
  before,
  after: sessionHeaders(),
  stored,
  meta: document.querySelector('meta[name="' + SESSION_META + '"]') !== null,
  address: location.pathname + location.search + location.hash,
  sent: answer.ok ? answer.data.sent : answer.message,
} });
`;

/** The API echoes the session header it received. */
const echo = (req: Request) => Response.json({ sent: req.headers.get(SESSION_HEADER) });

// deno-lint-ignore no-explicit-any
type Seen = any;

/** What the entry reported on `page`. */
async function seenOn(page: Page): Promise<Seen> {
  const handle = await page.waitForFunction(() => (window as Seen).seen, null, { timeout: 10_000 });
  return await handle.jsonValue();
}

Deno.test("the session's secret: from a login page to storage and every API call, or memory only", async (t) => {
  await using s = await serveModulePage({
    entry: ENTRY,
    api: echo,
    head: (path) =>
      path === "/login"
        ? '<meta name="ztm-session" content="s3cret">'
        : path === "/sandboxed"
        ? '<meta name="ztm-session" content="in-memory">'
        : "",
    // A sandboxed page has an opaque origin, which has no storage.
    headers: (path): Record<string, string> =>
      path === "/sandboxed" ? { "content-security-policy": "sandbox allow-scripts" } : {},
  });

  await t.step(
    "a fresh login's secret goes from the page to storage and rides on API calls",
    async () => {
      const page = await s.open("/login?code=abc#/m/work/endpoints");
      assert.deepEqual(await seenOn(page), {
        before: {},
        after: { [SESSION_HEADER]: "s3cret" },
        stored: "s3cret",
        meta: false,
        address: "/#/m/work/endpoints",
        sent: "s3cret",
      });
      // Another page of the same origin (a second tab, a reload) finds it in storage.
      await page.goto(`${s.origin}/`);
      const again = await seenOn(page);
      assert.deepEqual(again.before, { [SESSION_HEADER]: "s3cret" });
      assert.equal(again.sent, "s3cret");
    },
  );

  await t.step("a page without a login's meta adopts nothing and sends no secret", async () => {
    const seen = await seenOn(await s.open("/#/join"));
    assert.deepEqual(seen.after, {});
    assert.equal(seen.sent, null);
    assert.equal(seen.address, "/#/join");
  });
  assert.deepEqual(s.browser.unexpectedErrors(), []);

  await t.step("with storage switched off the secret lasts as long as the page", async () => {
    const seen = await seenOn(await s.open("/sandboxed"));
    assert.equal(seen.stored, "storage off");
    assert.deepEqual(seen.after, { [SESSION_HEADER]: "in-memory" });
    assert.equal(seen.meta, false);
    // (Its API call is cross-origin from an opaque origin: the browser blocks it, as it should.)
  });
});
