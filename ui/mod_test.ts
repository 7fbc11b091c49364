/**
 * The dashboard as the agent serves it, called with plain `Request`s: assets
 * under content-hashed names (immutable, 304 for a matching ETag, 404 for
 * an unknown name, nothing for other paths), the signed-in page's headers,
 * and the signed-out page's sign-in instructions with the token file quoted
 * for the shell.
 */
import assert from "node:assert/strict";
import { ASSET_PREFIX, Dashboard } from "./mod.tsx";

const dashboard = await Dashboard.load();
const get = (path: string, headers: Record<string, string> = {}) =>
  new Request(`http://127.0.0.1:7777${path}`, { headers });

Deno.test("assets are served under their content hash, immutable, with a 304 for a matching ETag", async () => {
  const { js, css } = dashboard.urls;
  assert.match(js, /^\/assets\/dashboard\.[0-9a-f]{16}\.js$/);
  assert.match(css, /^\/assets\/dashboard\.[0-9a-f]{16}\.css$/);
  assert.ok(js.startsWith(ASSET_PREFIX));
  const bundle = new Uint8Array(
    await (await fetch(new URL("dist/dashboard.js", import.meta.url))).arrayBuffer(),
  );
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bundle));
  const hash = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(js, `/assets/dashboard.${hash}.js`);

  const res = dashboard.asset(get(js))!;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(res.headers.get("etag"), `"${hash}"`);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bundle);
  const styles = dashboard.asset(get(css))!;
  assert.equal(styles.headers.get("content-type"), "text/css; charset=utf-8");
  await styles.body?.cancel();

  const again = dashboard.asset(get(js, { "if-none-match": `"${hash}"` }))!;
  assert.equal(again.status, 304);
  assert.equal(again.body, null);
  const stale = dashboard.asset(get(js, { "if-none-match": '"0000000000000000"' }))!;
  assert.equal(stale.status, 200);
  await stale.body?.cancel();
});

Deno.test("an unknown asset name is a 404 never cached; other paths are not the dashboard's", async () => {
  const missing = dashboard.asset(get("/assets/dashboard.0000000000000000.js"))!;
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("cache-control"), "no-store");
  assert.equal(await missing.text(), "Not found\n");
  assert.equal(dashboard.asset(get("/api/meshes")), undefined);
  assert.equal(dashboard.asset(get("/")), undefined);
});

Deno.test("the signed-in page is HTML never cached, framed or sniffed, with a strict script policy", async () => {
  const res = dashboard.page({ meshes: [], defaultEndpointName: "laptop", version: "1.2.3" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  const csp = res.headers.get("content-security-policy")!;
  for (const rule of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(rule), csp);
  }
  const html = await res.text();
  assert.ok(html.includes(`src="${dashboard.urls.js}"`));
  assert.ok(html.includes("ztm agent 1.2.3"));
});

Deno.test("the signed-out page says how to get a login URL, quoting the token file for the shell", async () => {
  const res = dashboard.signedOut("http://127.0.0.1:7777", "/home/al ice/it's.token", false);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("cache-control"), "no-store");
  const html = await res.text();
  assert.ok(html.includes("<title>Sign in to this ztm agent · ztm</title>"));
  assert.ok(html.includes("http://127.0.0.1:7777/login?code=…"), html);
  const curl = `curl -X POST -H "Authorization: Bearer $(cat '/home/al ice/it'\\''s.token')" ` +
    `\\\n  http://127.0.0.1:7777/api/login-codes`;
  // The page shows it and its copy button copies it, exactly (HTML-escaped in the attribute).
  assert.ok(html.includes(`data-copy="${curl.replaceAll('"', "&quot;")}"`), html);
  assert.ok(html.includes('data-copy="ztm dashboard"'));

  const plain = await dashboard.signedOut("http://127.0.0.1:7777", "/var/ztm.db.token", true)
    .text();
  assert.ok(plain.includes("<title>This login link does not work · ztm</title>"));
  assert.ok(plain.includes("already used or is too old"));
  assert.ok(plain.includes("$(cat /var/ztm.db.token)"), "a plain path is not quoted");
});
