/**
 * Invite a device from the dashboard of `ztm start` (whose agent runs beside
 * the mesh CA), in a real Chromium: the invite is shown as a string and as a
 * QR code, and the QR code, read back from the rendered pixels with a QR
 * decoder (jsQR), is exactly that string; a second machine joins with it.
 * Only an agent beside its mesh's CA makes invites: an agent of the same mesh
 * that does not run the CA, and the agent beside the CA for a mesh of another
 * CA, answer 404; no token, 401.
 */
import assert from "node:assert/strict";
import jsQRModule from "jsqr";
import type { Page } from "playwright-core";
import { api, eventually, Harness, issueUser, joinMesh } from "../fixtures/harness.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";
import { startAllInOne } from "../fixtures/cli_helpers.ts";

/** jsQR's function: a CommonJS module whose types say it is the default export's. */
const jsQR = jsQRModule as unknown as (
  data: Uint8ClampedArray,
  width: number,
  height: number,
) => { data: string } | null;

/** Runs `ztm start` on ports 0 with its hub named localhost; returns its agent's URL. */
async function startLocalhost(h: Harness): Promise<string> {
  const dir = await h.tempDir("ztm-start-");
  const opts = { args: ["--names=localhost"], timeoutMs: 30_000 };
  return (await startAllInOne(h, dir, opts)).url;
}

/**
 * Reads the QR code drawn by the SVG `selector` on `page`: the browser
 * rasterises the SVG onto a canvas, jsQR decodes the pixels. Null when no QR
 * code is found there.
 */
async function readQr(page: Page, selector: string): Promise<string | null> {
  const image = await page.evaluate(async (sel) => {
    const svg = document.querySelector(sel);
    if (!svg) return null;
    const xml = new XMLSerializer().serializeToString(svg);
    const img = new Image();
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(xml)}`;
    await img.decode();
    const size = 400;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext("2d")!;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, size, size);
    return { size, data: Array.from(ctx.getImageData(0, 0, size, size).data) };
  }, selector);
  if (!image) return null;
  const found = jsQR(new Uint8ClampedArray(image.data), image.size, image.size);
  return found?.data ?? null;
}

Deno.test("the dashboard of ztm start makes an invite shown as a QR code that decodes to it; only an agent beside the CA can", async () => {
  await using h = new Harness();
  const startUrl = await startLocalhost(h);
  const local = await eventually(
    async () => {
      const m = (await api(startUrl, "GET", "/api/meshes/local")).body;
      return m?.status?.connected ? m : undefined;
    },
    20_000,
    "the local mesh connected",
  );
  assert.equal(local.canInvite, true);

  await using b = await openBrowser();
  const page = await b.signIn(startUrl, WIDE);
  await goTo(page, "#/", /^Status$/);
  await page.getByRole("link", { name: "Invite a device" }).click();
  await page.getByRole("heading", { level: 1, name: "Invite a device" }).waitFor();
  await page.getByLabel("User").fill("bob");
  await page.getByLabel("Works for").selectOption("15m");
  await page.getByRole("button", { name: "Make invite" }).click();
  const made = page.getByTestId("invite-made");
  await made.waitFor({ timeout: 15_000 });
  const invite = await page.locator("#invite-string").inputValue();
  assert.match(invite, /^ztm-invite-1\.[A-Za-z0-9_-]+$/);
  assert.match(await page.getByTestId("invite-terms").innerText(), /Works for 1 device until/);
  assert.equal(
    await page.getByRole("img", { name: "QR code of the invite for bob" }).count(),
    1,
  );
  // The QR code is the invite: decoded from what the browser drew.
  assert.equal(await readQr(page, "#invite-qr"), invite);
  await screenshot(page, "invite-made");
  await page.setViewportSize(NARROW);
  assert.deepEqual(await layoutProblems(page), []);
  await screenshot(page, "invite-made");
  assert.equal(await readQr(page, "#invite-qr"), invite);

  // The invite works: another machine joins with it as bob.
  const phone = await h.startAgent({ name: "agent-phone" });
  const joined = await api(phone.url, "POST", "/api/meshes/work?wait=20", {
    invite,
    agent: { name: "phone" },
  });
  assert.equal(joined.status, 201, JSON.stringify(joined.body));
  assert.equal(joined.body.user, "bob");
  // That agent is in the same mesh but does not run its CA: no invites there.
  assert.equal(joined.body.canInvite, false);
  const refused = await api(phone.url, "POST", "/api/meshes/work/invites", { user: "eve" });
  assert.equal(refused.status, 404, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, "invites_unavailable");
  // Nor without the token or a session, on the agent that can.
  const anonymous = await fetch(`${startUrl}/api/meshes/local/invites`, {
    method: "POST",
    body: JSON.stringify({ user: "eve" }),
  });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  // A bad request is refused before the CA is asked.
  const bad = await api(startUrl, "POST", "/api/meshes/local/invites", { user: "-eve" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, "bad_user");
  // The agent beside the CA, joined to another mesh (another CA): no invites for that one.
  const otherCa = await h.startCa();
  const otherHub = await h.startHub(otherCa);
  const other = await joinMesh(
    startUrl,
    "other",
    await issueUser(otherCa.url, "carol"),
    otherHub.address,
    "carol-ep",
  );
  assert.equal(other.canInvite, false);
  const foreign = await api(startUrl, "POST", "/api/meshes/other/invites", { user: "eve" });
  assert.equal(foreign.status, 404, JSON.stringify(foreign.body));
  assert.equal(foreign.body.error.code, "invites_unavailable");
  assert.equal((await api(startUrl, "GET", "/api/meshes/local")).body.canInvite, true);
  assert.deepEqual(b.unexpectedErrors(), []);
});
