/**
 * The dashboard's bundle and how the agent serves it: the committed
 * `ui/dist/dashboard.js` is what `deno task ui:build` makes from the sources
 * today, and the agent serves pages uncached with a strict CSP and assets
 * under content-hashed names with immutable caching and ETags.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { BUNDLE_PATH, bundleDashboard } from "../../ui/build.ts";
import { Harness, ROOT } from "../fixtures/harness.ts";

Deno.test("the committed dashboard bundle is fresh (run `deno task ui:build` if this fails)", async () => {
  await using h = new Harness();
  const out = join(await h.tempDir("ztm-bundle-"), "dashboard.js");
  await bundleDashboard(out);
  const fresh = Deno.readTextFileSync(out);
  const committed = Deno.readTextFileSync(BUNDLE_PATH);
  assert.ok(fresh.length > 1000, "the bundle has content");
  assert.ok(fresh === committed, "ui/dist/dashboard.js differs from a fresh build");
  console.log(`dashboard bundle: ${new TextEncoder().encode(fresh).length} bytes`);
});

Deno.test("the agent serves the dashboard page uncached and its assets hashed and immutable", async () => {
  await using h = new Harness();
  const agent = await h.startAgent();
  const auth = { authorization: `Bearer ${agent.token}` };

  const signedOut = await fetch(`${agent.url}/`);
  assert.equal(signedOut.status, 401);
  assert.equal(signedOut.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(signedOut.headers.get("cache-control"), "no-store");
  assert.match(signedOut.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.match(await signedOut.text(), /Sign in to this ztm agent/);

  const page = await fetch(`${agent.url}/`, { headers: auth });
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("cache-control"), "no-store");
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const html = await page.text();
  assert.match(html, /data-island="app"/);
  assert.match(html, /<script type="application\/json" id="app-props">/);
  const js = /src="(\/assets\/dashboard\.[0-9a-f]{16}\.js)"/.exec(html)?.[1];
  const css = /href="(\/assets\/dashboard\.[0-9a-f]{16}\.css)"/.exec(html)?.[1];
  assert.ok(js && css, "the page links hashed assets");

  // Assets need no session (they hold no data) and never change under one name.
  const bundle = await fetch(`${agent.url}${js}`);
  assert.equal(bundle.status, 200);
  assert.equal(bundle.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(bundle.headers.get("cache-control"), "public, max-age=31536000, immutable");
  const etag = bundle.headers.get("etag");
  assert.match(etag ?? "", /^"[0-9a-f]{16}"$/);
  assert.deepEqual(
    new Uint8Array(await bundle.arrayBuffer()),
    Deno.readFileSync(join(ROOT, "ui", "dist", "dashboard.js")),
  );
  const again = await fetch(`${agent.url}${js}`, { headers: { "if-none-match": etag! } });
  assert.equal(again.status, 304);
  await again.body?.cancel();

  const style = await fetch(`${agent.url}${css}`);
  assert.equal(style.headers.get("content-type"), "text/css; charset=utf-8");
  assert.match(await style.text(), /:root/);

  const unknown = await fetch(`${agent.url}/assets/dashboard.0000000000000000.js`);
  assert.equal(unknown.status, 404);
  await unknown.body?.cancel();
  // Outside /assets/ the API's rules still hold.
  const api = await fetch(`${agent.url}/api/meshes`);
  assert.equal(api.status, 401);
  await api.body?.cancel();
});
