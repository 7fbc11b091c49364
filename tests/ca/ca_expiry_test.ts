/**
 * The CA's own certificate, a year ahead of its end: a CA whose certificate
 * ends in about 200 days says so in its log, in `GET /api/status` and in
 * `ztm cert status`; an agent of its mesh carries the warning in its mesh
 * status, `ztm status` prints it, and the dashboard's Status screen shows it
 * in a banner. A CA with ten years left warns nowhere.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createCaCertificate, generateKeyPair } from "@ztm/shared/certs";
import { CaStore } from "../../ca/store.ts";
import { agentFlags, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { rememberPrivateKeyDer } from "../fixtures/secret_scan.ts";
import {
  goTo,
  layoutProblems,
  NARROW,
  openBrowser,
  screenshot,
  WIDE,
} from "../fixtures/ui_browser.ts";

/** A CA database in `dir` whose CA certificate ends `days` from now. */
async function seedCa(dir: string, days: number): Promise<void> {
  const keys = await generateKeyPair();
  const cert = await createCaCertificate(keys, { name: "ztm mesh CA ending", years: days / 365 });
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  rememberPrivateKeyDer(der);
  const store = CaStore.open(join(dir, "ca.db"));
  store.saveCa(der, cert.toString("pem") + "\n");
  store.close();
}

Deno.test("a CA certificate ending within a year is flagged by the CA, ztm cert status, the agent, ztm status and the dashboard", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-ca-ending-");
  await seedCa(dir, 200);
  const ca = await h.startCa({ dir });
  await ca.waitForLog((l) => l.code === "ca_expiring");

  // The CA's status route, and the command that reads it.
  const res = await fetch(`${ca.url}/api/status`);
  assert.equal(res.status, 200);
  const status = await res.json();
  assert.match(status.ca.subject, /ztm mesh CA ending/);
  assert.match(status.ca.fingerprint, /^[0-9a-f]{64}$/);
  assert.ok(status.ca.daysLeft >= 198 && status.ca.daysLeft <= 200, String(status.ca.daysLeft));
  assert.match(status.ca.warning, /expires on \d{4}-\d\d-\d\d \(in 19\d days\)/);
  const certStatus = await ztmOk(["cert", "status", `--ca-url=${ca.url}`]);
  assert.match(certStatus, /^CA EXPIRING: The mesh CA's certificate expires on /m);
  assert.match(certStatus, new RegExp(`fingerprint +${status.ca.fingerprint}`));

  // An agent of that mesh knows its CA certificate, and says the same.
  const hub = await h.startHub(ca);
  const alice = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "alice"));
  const mesh = (await api(alice.url, "GET", "/api/meshes/test")).body;
  assert.equal(mesh.caCertificate.notAfter, status.ca.notAfter);
  assert.equal(mesh.caCertificate.warning, status.ca.warning);
  const out = await ztmOk(["status", ...agentFlags(alice.proc)]);
  assert.match(
    out,
    /^test: MESH CA EXPIRING: The mesh CA's certificate expires on .* \(in 19\d days\)/m,
  );

  // The dashboard's Status screen: a banner in plain words, at both widths.
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  await goTo(page, "#/", /^Status$/);
  const banner = page.getByTestId("ca-expiry");
  await banner.waitFor({ timeout: 10_000 });
  const text = await banner.innerText();
  assert.match(text, /The mesh's CA needs rotating/);
  assert.match(text, /every certificate of the mesh stops working then/);
  assert.equal(await banner.getAttribute("role"), "alert");
  await screenshot(page, "status-ca-expiring");
  await page.setViewportSize(NARROW);
  assert.deepEqual(await layoutProblems(page), []);
  await screenshot(page, "status-ca-expiring");
  assert.deepEqual(b.unexpectedErrors(), []);
});

Deno.test("a CA with ten years left warns nowhere", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const status = await (await fetch(`${ca.url}/api/status`)).json();
  assert.equal(status.ca.warning, null);
  assert.ok(status.ca.daysLeft > 3600, String(status.ca.daysLeft));
  assert.equal(ca.logs.filter((l) => l.code === "ca_expiring").length, 0);
  assert.doesNotMatch(await ztmOk(["cert", "status", `--ca-url=${ca.url}`]), /EXPIRING/);

  const hub = await h.startHub(ca);
  const alice = await startJoinedAgent(h, hub.address, await issueUser(ca.url, "alice"));
  const mesh = (await api(alice.url, "GET", "/api/meshes/test")).body;
  assert.equal(mesh.caCertificate.warning, null);
  assert.doesNotMatch(await ztmOk(["status", ...agentFlags(alice.proc)]), /CA EXPIRING/);
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  await goTo(page, "#/", /^Status$/);
  await page.getByTestId("ca-not-after").waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId("ca-expiry").count(), 0);
});
