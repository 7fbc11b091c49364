/** @jsxImportSource preact */
/**
 * The HTML around the dashboard, rendered on the server: head, stylesheet,
 * and either the `app` island (rendered with its props, which are embedded
 * as JSON for the client to hydrate with) or a static page for visitors
 * without a session.
 */
import type { ComponentChildren } from "preact";
import { renderToString } from "preact-render-to-string";
import type { DashboardProps } from "./api_types.ts";
import { App, initState } from "./app.tsx";
import { SESSION_META } from "./session.ts";

/** URLs of the hashed assets. */
export interface AssetUrls {
  js: string;
  css: string;
}

/**
 * The signed-in page: the app island, server-rendered, plus the bundle that
 * hydrates it; a fresh login's `session` secret rides in a `<meta>` the
 * script takes out.
 */
export function renderAppPage(assets: AssetUrls, props: DashboardProps, session?: string): string {
  initState(props);
  const island = renderToString(<App {...props} />);
  return document(
    "ztm dashboard",
    assets,
    <>
      {session && <meta name={SESSION_META} content={session} />}
      <div id="app" data-island="app" dangerouslySetInnerHTML={{ __html: island }} />
      <script
        type="application/json"
        id="app-props"
        dangerouslySetInnerHTML={{ __html: jsonForScript(props) }}
      />
      <script type="module" src={assets.js} />
    </>,
  );
}

/** A page without the app (signed out, bad login link): a title and an explanation. */
export function renderStaticPage(
  assets: AssetUrls,
  title: string,
  body: ComponentChildren,
): string {
  return document(
    `${title} · ztm`,
    assets,
    <>
      <main id="main" class="narrow">
        <section class="card intro">
          <h1>{title}</h1>
          {body}
        </section>
      </main>
      {/* The bundle only works the copy buttons here: there is no island to hydrate. */}
      <script type="module" src={assets.js} />
    </>,
  );
}

function document(title: string, assets: AssetUrls, body: ComponentChildren): string {
  return "<!doctype html>" + renderToString(
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{title}</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href={assets.css} />
      </head>
      <body>{body}</body>
    </html>,
  );
}

/** JSON that cannot end the `<script>` element it sits in. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}
