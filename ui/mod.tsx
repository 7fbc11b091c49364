/** @jsxImportSource preact */
/**
 * The agent's web dashboard, ready to serve: the committed bundle
 * (`ui/dist/dashboard.js`, made by `deno task ui:build`) and stylesheet under
 * content-hashed names with immutable caching, and the server-rendered pages.
 * The agent decides who is signed in; this module only renders.
 *
 * @example
 * ```ts
 * const dashboard = await Dashboard.load();
 * const res = dashboard.asset(new URL(req.url).pathname) ?? dashboard.page(props);
 * ```
 *
 * @module
 */
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import type { DashboardProps } from "./api_types.ts";
import { CopyButton } from "./components.tsx";
import { renderAppPage, renderStaticPage } from "./shell.tsx";

export type { DashboardProps, MeshSummary } from "./api_types.ts";

/** Where hashed assets are served. */
export const ASSET_PREFIX: string = agentPath(AGENT_PATHS.asset, { name: "" });

/** Headers of every HTML page: never cached, no framing, scripts and styles from this origin only. */
const PAGE_HEADERS: Record<string, string> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

interface Asset {
  body: Uint8Array;
  type: string;
  etag: string;
}

/** The loaded dashboard. Its methods are pure and may be called concurrently. */
export class Dashboard {
  #assets = new Map<string, Asset>();
  #urls: { js: string; css: string };

  private constructor(js: Asset & { name: string }, css: Asset & { name: string }) {
    this.#assets.set(js.name, js);
    this.#assets.set(css.name, css);
    this.#urls = { js: ASSET_PREFIX + js.name, css: ASSET_PREFIX + css.name };
  }

  /** Reads the bundle and stylesheet beside this module. Throws if the bundle was never built. */
  static async load(): Promise<Dashboard> {
    const js = await loadAsset("dist/dashboard.js", "text/javascript; charset=utf-8");
    const css = await loadAsset("dashboard.css", "text/css; charset=utf-8");
    return new Dashboard(js, css);
  }

  /** URLs of the bundle and stylesheet, with their content hash in the name. */
  get urls(): { js: string; css: string } {
    return { ...this.#urls };
  }

  /**
   * Answers `GET /assets/<name>` (immutable: the name changes with the
   * content), 304 for a matching `If-None-Match`; undefined for other paths,
   * a 404 for unknown asset names.
   */
  asset(req: Request): Response | undefined {
    const { pathname } = new URL(req.url);
    if (!pathname.startsWith(ASSET_PREFIX)) return undefined;
    const asset = this.#assets.get(pathname.slice(ASSET_PREFIX.length));
    if (!asset) {
      return new Response("Not found\n", {
        status: 404,
        headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
      });
    }
    const headers = {
      "content-type": asset.type,
      "cache-control": "public, max-age=31536000, immutable",
      etag: asset.etag,
      "x-content-type-options": "nosniff",
    };
    if (req.headers.get("if-none-match") === asset.etag) {
      return new Response(null, { status: 304, headers });
    }
    return new Response(asset.body as Uint8Array<ArrayBuffer>, { headers });
  }

  /**
   * The signed-in dashboard with `props` rendered in; `session`, a fresh
   * login's secret, is handed to the page's script (see `session.ts`).
   */
  page(props: DashboardProps, session?: string): Response {
    return new Response(renderAppPage(this.#urls, props, session), { headers: PAGE_HEADERS });
  }

  /**
   * The page for a browser without a session (401): how to get a login URL.
   * `tokenFile` is where the API token is; `expired` says the link it came
   * with was used or too old.
   */
  signedOut(agentUrl: string, tokenFile: string, expired: boolean): Response {
    const curl = `curl -X POST -H "Authorization: Bearer $(cat ${
      shellQuote(tokenFile)
    })" \\\n  ${agentUrl}${AGENT_PATHS.loginCodes}`;
    const html = renderStaticPage(
      this.#urls,
      expired ? "This login link does not work" : "Sign in to this ztm agent",
      <>
        {expired
          ? (
            <p>
              Each login link works once, for 10 minutes; this one was already used or is too old.
            </p>
          )
          : (
            <>
              <p>The dashboard opens with the one-time login link the agent printed at start:</p>
              <pre><code>ztm agent: dashboard login (works once): {agentUrl}{AGENT_PATHS.login}?code=…</code></pre>
            </>
          )}
        <p>
          {expired ? "Get" : "Lost it or used it already? Get"} a new one: on this machine, run
        </p>
        <pre class="command"><code>ztm dashboard</code> <CopyButton text="ztm dashboard" what="command ztm dashboard" /></pre>
        <p>
          and open the URL it prints in this browser. Without the <code>ztm</code>{" "}
          command line, ask the agent's API with its token file:
        </p>
        <pre class="command"><code>{curl}</code> <CopyButton text={curl} what="curl command" /></pre>
        <p class="muted">
          Then open the <code>url</code> it answers in this browser.
        </p>
      </>,
    );
    return new Response(html, { status: 401, headers: PAGE_HEADERS });
  }
}

async function loadAsset(path: string, type: string): Promise<Asset & { name: string }> {
  const url = new URL(path, import.meta.url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`Dashboard asset ${url} is missing (${res.status})`);
  const body = new Uint8Array(await res.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  const hash = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const base = path.split("/").pop()!;
  const dot = base.lastIndexOf(".");
  return {
    name: `${base.slice(0, dot)}.${hash}${base.slice(dot)}`,
    body,
    type,
    etag: `"${hash}"`,
  };
}

/** `s` as one POSIX shell word. */
function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./~-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
