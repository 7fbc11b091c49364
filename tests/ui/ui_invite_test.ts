/**
 * The dashboard's invite paste box, in a real Chromium: an invite with a
 * tampered CA fingerprint is refused on the page with the reason and nothing
 * is saved; the real invite, pasted with the line breaks a chat window adds,
 * joins this machine as the invite's user and shows the mesh's endpoints.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import type { Page } from "playwright-core";
import { decodeInvite, encodeInvite } from "../../shared/invite.ts";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";
import { rememberPrivateKey } from "../fixtures/secret_scan.ts";

async function pasteInvite(page: Page, mesh: string, invite: string): Promise<void> {
  await page.getByLabel("Mesh to join").fill(mesh);
  await page.getByLabel("This machine in the mesh").fill("phone");
  await page.locator("#invite-text").fill(invite);
  await page.getByRole("button", { name: "Join with invite" }).click();
}

Deno.test("the Join screen's paste box joins with an invite; a tampered one is refused", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  await hub.waitForLog((l) => l.msg === "hub announced to the ca");
  const agent = await h.startAgent();
  const res = await fetch(`${ca.url}/api/invites`, {
    method: "POST",
    body: JSON.stringify({ user: "alice" }),
  });
  const { invite } = await res.json();
  assert.equal(res.status, 201);

  await using b = await openBrowser();
  const page = await b.signIn(agent.url, NARROW);
  await page.getByRole("heading", { name: "Join with an invite" }).waitFor();
  await screenshot(page, "join-invite");
  assert.deepEqual(await layoutProblems(page), []);

  const tampered = encodeInvite({ ...decodeInvite(invite), caFingerprint: "cd".repeat(32) });
  await pasteInvite(page, "work", tampered);
  const alert = page.locator("form .error[role=alert]").first();
  await alert.waitFor({ timeout: 20_000 });
  const text = await alert.innerText();
  assert.match(text, /fingerprint is not the one in the invite/);
  assert.match(text, /Nothing was saved/);
  assert.deepEqual((await api(agent.url, "GET", "/api/meshes")).body, []);
  await screenshot(page, "join-invite-refused");

  // The real one, broken over lines as a chat window would.
  await pasteInvite(page, "work", invite.replace(/(.{60})/g, "$1\n"));
  await page.waitForURL(/#\/m\/work\/endpoints/, { timeout: 30_000 });
  const mesh = await eventually(
    async () => {
      const m = (await api(agent.url, "GET", "/api/meshes/work")).body;
      return m.status?.connected ? m : undefined;
    },
    20_000,
    "the mesh connected",
  );
  assert.equal(mesh.user, "alice");
  assert.equal(mesh.endpoint.name, "phone");
  const db = new DatabaseSync(agent.database, { readOnly: true });
  rememberPrivateKey(
    (db.prepare("SELECT private_key FROM meshes").get() as { private_key: string }).private_key,
  );
  db.close();
  await page.setViewportSize(WIDE);
  await screenshot(page, "join-invite-joined");
  // The Status screen says when the certificate renews itself.
  await goTo(page, "#/", /^Status$/);
  assert.match(await page.getByTestId("renewal").innerText(), /renews itself at/);
  assert.deepEqual(b.unexpectedErrors([400, 401]), []);
});
