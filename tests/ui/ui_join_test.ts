/**
 * Joining from the dashboard with bad files: a key of another certificate, a
 * certificate from another CA, and a file that is not PEM at all each get a
 * clear message on the page, and the agent saves nothing. Also the signed-out
 * page and a spent login link, as a browser sees them.
 */
import assert from "node:assert/strict";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { MESH } from "../fixtures/mesh_fixture.ts";
import { newCa, newLeaf } from "../fixtures/test_pki.ts";
import {
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  submitJoinForm,
  WIDE,
} from "../fixtures/ui_browser.ts";
import type { Page } from "playwright-core";

/** The join form's error box text once it shows. */
async function joinError(page: Page): Promise<string> {
  const alert = page.locator("form .error[role=alert]");
  await alert.waitFor({ timeout: 10_000 });
  return await alert.innerText();
}

Deno.test("bad files in the join form get a clear message and nothing is saved", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const bob = await issueUser(ca.url, "bob");
  const agent = await h.startAgent();
  await using b = await openBrowser();
  const page = await b.signIn(agent.url, NARROW);
  await page.getByRole("heading", { name: "Welcome to ztm" }).waitFor();
  await screenshot(page, "welcome");
  assert.deepEqual(await layoutProblems(page), []);

  // Keyboard only: Tab reaches every control of the join form, in reading order.
  const reached: string[] = [];
  for (let i = 0; i < 30 && !reached.includes("join-submit"); i++) {
    await page.keyboard.press("Tab");
    reached.push(
      await page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        if (el?.getAttribute("type") === "submit" && !el.id) return "join-submit";
        return el?.id || el?.tagName.toLowerCase() || "";
      }),
    );
  }
  const controls = [
    "join-mesh",
    "join-endpoint",
    "join-hubs",
    "join-ca-file",
    "join-ca-text",
    "join-certificate-file",
    "join-certificate-text",
    "join-privateKey-file",
    "join-privateKey-text",
    "join-submit",
  ];
  assert.deepEqual(reached.filter((id) => controls.includes(id)), controls, reached.join(" "));

  // A key that belongs to another certificate: the agent refuses (400) and says why.
  await submitJoinForm(page, MESH, hub.address, { ...alice, privateKey: bob.privateKey });
  assert.match(await joinError(page), /Private key does not belong to certificate.*alice/);
  assert.match(await joinError(page), /Nothing was saved/);
  await screenshot(page, "join-bad-key");
  assert.deepEqual(await layoutProblems(page), []);
  assert.deepEqual((await api(agent.url, "GET", "/api/meshes")).body, []);

  // A certificate from another CA.
  const otherCa = await newCa();
  const stranger = await newLeaf(otherCa, { name: "alice" });
  await submitJoinForm(page, MESH, hub.address, { ca: alice.ca, ...stranger });
  assert.match(await joinError(page), /was not issued by the CA/);
  assert.deepEqual((await api(agent.url, "GET", "/api/meshes")).body, []);

  // Garbage as the key: the form says so before sending anything.
  const before = (await api(agent.url, "GET", "/api/meshes")).body;
  await submitJoinForm(page, MESH, hub.address, { ...alice, privateKey: "this is not a key\n" });
  await page.getByText("me.key is not a PEM private key").waitFor();
  assert.match(await joinError(page), /Some fields need attention; nothing was saved/);
  assert.deepEqual((await api(agent.url, "GET", "/api/meshes")).body, before);

  assert.deepEqual(b.unexpectedErrors([400]), []);
});

Deno.test("without a session the dashboard explains how to sign in; a spent login link says so", async () => {
  await using h = new Harness();
  const agent = await h.startAgent();
  await using b = await openBrowser();
  const page = await b.newPage(WIDE);
  const res = await page.goto(agent.url);
  assert.equal(res?.status(), 401);
  await page.getByRole("heading", { name: "Sign in to this ztm agent" }).waitFor();
  const text = await page.locator("main").innerText();
  assert.match(text, /login link the agent printed/);
  assert.ok(text.includes(`${agent.database}.token`), "names the agent's token file");
  assert.ok(text.includes(`${agent.url}/api/login-codes`), text);
  await screenshot(page, "signed-out");

  // A login URL works once; the second visit gets the explanation.
  const minted = await api(agent.url, "POST", "/api/login-codes");
  const first = await page.goto(minted.body.url);
  assert.equal(first?.status(), 200);
  await page.getByRole("heading", { name: "Welcome to ztm" }).waitFor();
  const second = await (await b.newPage(NARROW)).goto(minted.body.url);
  assert.equal(second?.status(), 401);
  assert.match(await second!.text(), /This login link does not work/);

  assert.deepEqual(b.unexpectedErrors([401]), []);
});
