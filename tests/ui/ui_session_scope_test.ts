/// <reference lib="dom" />
/**
 * The dashboard's credential belongs to its own origin. Browsers send a
 * cookie to every port of its host, so any web app on 127.0.0.1 the user's
 * browser visits — one reached through a port mapping too — receives the
 * dashboard's session cookie. The test plays that app: a second HTTP server
 * on another 127.0.0.1 port, visited by the signed-in browser, records the
 * cookie it is sent and replays it to the agent (as a server can, with any
 * headers it likes), and its page's script tries the API from the browser.
 * Nothing of the API answers; the dashboard itself keeps working.
 */
import assert from "node:assert/strict";
import { api, eventually, Harness, issueUser, joinMesh } from "../fixtures/harness.ts";
import { openBrowser, WIDE } from "../fixtures/ui_browser.ts";

const MESH_NAME = "home-private";

/** A web app on 127.0.0.1 port 0 that records the `Cookie` header of every request. */
function startLocalWebApp() {
  const cookies: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const cookie = req.headers.get("cookie");
    if (cookie) cookies.push(cookie);
    return new Response("<!doctype html><title>a local web app</title><p>hello</p>", {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    cookies,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("a web app on another 127.0.0.1 port gets the dashboard's cookie from the browser but cannot use the agent API with it", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const agent = await h.startAgent();
  // A joined mesh (its hub is not running: the mesh is only there to be leaked).
  await joinMesh(agent.url, MESH_NAME, await issueUser(ca.url, "alice"), "localhost:9", "laptop");
  await using app = startLocalWebApp();
  await using b = await openBrowser();

  const page = await b.signIn(agent.url, WIDE);
  await page.getByRole("heading", { name: `Mesh ${MESH_NAME}` }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/", "the spent login URL left the address bar");

  // The user's browser visits the local web app: the dashboard's cookie goes along.
  await page.goto(app.url);
  const sent = await eventually(
    () => app.cookies.find((c) => /ztm_session/.test(c)),
    10_000,
    "the browser sending the dashboard's cookie to the other port",
  );

  // That app's script can neither read the dashboard's secret nor call the API.
  const fromPage = await page.evaluate(async (agentUrl) => {
    const stored = localStorage.getItem("ztm-session");
    const tries: string[] = [];
    for (const init of [{}, { method: "POST" }] as RequestInit[]) {
      try {
        const res = await fetch(`${agentUrl}/api/login-codes`, { ...init, credentials: "include" });
        tries.push(`${res.status} ${await res.text()}`);
      } catch (err) {
        tries.push(`refused: ${err}`);
      }
    }
    return { stored, tries };
  }, agent.url);
  assert.equal(fromPage.stored, null);
  for (const t of fromPage.tries) assert.match(t, /^refused: /, t);

  // The app's server replays the cookie, forging the agent's own origin as well.
  const own = { cookie: sent, origin: agent.url, "sec-fetch-site": "same-origin" };
  const replays: [string, string][] = [
    ["GET", "/api/meshes"],
    ["GET", `/api/meshes/${MESH_NAME}`],
    ["POST", "/api/login-codes"],
    ["DELETE", `/api/meshes/${MESH_NAME}`],
  ];
  for (const [method, path] of replays) {
    for (const headers of [{ cookie: sent }, own]) {
      const res = await fetch(`${agent.url}${path}`, { method, headers });
      const text = await res.text();
      assert.equal(res.status, 401, `${method} ${path} with the cookie: ${text}`);
      assert.ok(!text.includes(MESH_NAME), `${method} ${path} leaked the mesh: ${text}`);
    }
  }
  // The page at / shows the dashboard's frame for the cookie, but none of the agent's data.
  const home = await fetch(`${agent.url}/`, { headers: { cookie: sent } });
  const html = await home.text();
  assert.equal(home.status, 200);
  assert.ok(!html.includes(MESH_NAME), "the page for the cookie alone names the mesh");
  assert.ok(!html.includes('name="ztm-session"'), "the page for the cookie alone has a secret");
  assert.equal(
    (await api(agent.url, "GET", "/api/meshes")).body.length,
    1,
    "the mesh is still joined",
  );

  // The dashboard itself still works, in this tab and a new one, with the secret its origin keeps.
  await page.goto(agent.url);
  await page.getByRole("heading", { name: `Mesh ${MESH_NAME}` }).waitFor();
  const tab = await page.context().newPage();
  await tab.goto(agent.url);
  await tab.getByRole("heading", { name: `Mesh ${MESH_NAME}` }).waitFor();
  // Positive control for the replays: the cookie with the secret is what the API wants.
  const secret = await page.evaluate(() => localStorage.getItem("ztm-session"));
  assert.ok(secret, "the dashboard keeps its secret in its origin's storage");
  const both = await fetch(`${agent.url}/api/meshes`, {
    headers: { cookie: sent, "x-ztm-session": secret },
  });
  assert.equal(both.status, 200);
  assert.equal((await both.json())[0]?.name, MESH_NAME);

  // The refusals the other app's script met are its console's; the dashboard's console is clean.
  assert.deepEqual(b.unexpectedErrors().filter((l) => l.startsWith(agent.url)), []);
});
