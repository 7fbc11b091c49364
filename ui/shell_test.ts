/**
 * The HTML around the dashboard, rendered on the server: the island with
 * its props embedded so that no value can end their `<script>`, a fresh
 * login's secret in a `<meta>` only when there is one, and the static page
 * for visitors without a session.
 */
import assert from "node:assert/strict";
import { h } from "preact";
import type { DashboardProps } from "./api_types.ts";
import { renderAppPage, renderStaticPage } from "./shell.tsx";
import { SESSION_META } from "./session.ts";

const ASSETS = { js: "/assets/dashboard.0123.js", css: "/assets/dashboard.4567.css" };

/** The text of the `<script id="app-props">` element. */
function embeddedProps(html: string): string {
  const m = /<script type="application\/json" id="app-props">(.*?)<\/script>/s.exec(html);
  assert.ok(m, html);
  return m[1];
}

Deno.test("the app page renders the island, embeds its props and links the hashed assets", () => {
  const props: DashboardProps = { meshes: [], defaultEndpointName: "laptop", version: "9.9.9" };
  const html = renderAppPage(ASSETS, props);
  assert.ok(html.startsWith('<!doctype html><html lang="en"><head><meta charset="utf-8"/>'));
  assert.ok(html.includes("<title>ztm dashboard</title>"));
  assert.ok(html.includes(`<link rel="stylesheet" href="${ASSETS.css}"/>`));
  assert.ok(html.includes(`<script type="module" src="${ASSETS.js}"></script>`));
  const island = /<div id="app" data-island="app">(.*?)<\/div><script/s.exec(html)?.[1];
  assert.ok(island?.includes("ztm agent 9.9.9"), island);
  assert.deepEqual(JSON.parse(embeddedProps(html)), props);
  assert.ok(!html.includes(`name="${SESSION_META}"`), "no secret without a fresh login");
  const signedIn = renderAppPage(ASSETS, props, "s3cret-value");
  assert.ok(signedIn.includes(`<meta name="${SESSION_META}" content="s3cret-value"/>`));
});

Deno.test("no prop value can close the props' script element or break the JSON", () => {
  const hostile = "</script><script>alert(1)</script>\u2028\u2029<!--";
  const props: DashboardProps = { meshes: [], defaultEndpointName: hostile, version: "1" };
  const html = renderAppPage(ASSETS, props);
  const text = embeddedProps(html);
  assert.ok(!text.includes("<"), text);
  assert.ok(!text.includes("\u2028") && !text.includes("\u2029"));
  assert.deepEqual(JSON.parse(text), props);
  assert.equal(html.split("<script").length - 1, 2, "the props' script and the bundle, no more");
});

Deno.test("a static page has the title, the body and the bundle, and no island", () => {
  const html = renderStaticPage(ASSETS, "Sign in", h("p", {}, "Run ztm dashboard"));
  assert.ok(html.startsWith("<!doctype html>"));
  assert.ok(html.includes("<title>Sign in · ztm</title>"));
  assert.ok(
    html.includes(
      '<main id="main" class="narrow"><section class="card intro"><h1>Sign in</h1><p>Run ztm dashboard</p></section></main>',
    ),
    html,
  );
  assert.ok(html.includes(`<script type="module" src="${ASSETS.js}"></script>`));
  assert.ok(!html.includes("data-island"));
});
