/**
 * Serves the web dashboard (`@ztm/ui`) from the agent: hashed assets for
 * anyone (they hold no data), the server-rendered app for a signed-in
 * browser, and the "how to sign in" page for everyone else. Which requests
 * are signed in is the API's decision (`ApiAccess`); this module only picks
 * the page.
 */
import { Dashboard, type MeshSummary } from "@ztm/ui";
import { VERSION } from "@ztm/shared/version";
import { defaultEndpointName } from "./join.ts";

/** What the dashboard pages need from the agent. */
export interface DashboardSource {
  /** The joined meshes as `GET /api/meshes` shows them. */
  meshes: () => MeshSummary[];
  /** The endpoint name a join without one gets. */
  endpointName?: string;
  /** The API token's file, for the sign-in page's instructions. */
  tokenFile?: string;
}

/** The agent's dashboard pages. The bundle is read once, on first use. */
export class DashboardPages {
  #source: DashboardSource;
  #loaded?: Promise<Dashboard>;

  constructor(source: DashboardSource) {
    this.#source = source;
  }

  /** A response for `GET /assets/…`, or undefined for other requests. */
  async asset(req: Request): Promise<Response | undefined> {
    if (req.method !== "GET" && req.method !== "HEAD") return undefined;
    if (!new URL(req.url).pathname.startsWith("/assets/")) return undefined;
    return (await this.#dashboard()).asset(req);
  }

  /**
   * The dashboard for a signed-in browser: with the meshes when `withData`
   * (the request carried the API's credentials), else empty for its script
   * to fill through the API. `session` is a fresh login's secret for the
   * page's script to keep.
   */
  async app(withData: boolean, session?: string): Promise<Response> {
    return (await this.#dashboard()).page({
      ...(withData ? { meshes: this.#source.meshes() } : {}),
      defaultEndpointName: this.#source.endpointName ?? defaultEndpointName(),
      version: VERSION,
    }, session);
  }

  /** 401: how to get a login link (`expired` when the visitor came with a spent one). */
  async signedOut(req: Request, expired: boolean): Promise<Response> {
    const host = req.headers.get("host") ?? "127.0.0.1:7777";
    const tokenFile = this.#source.tokenFile ?? "<database>.token";
    return (await this.#dashboard()).signedOut(`http://${host}`, tokenFile, expired);
  }

  #dashboard(): Promise<Dashboard> {
    this.#loaded ??= Dashboard.load().catch((err) => {
      this.#loaded = undefined; // try again on the next request (e.g. after `deno task ui:build`)
      throw err;
    });
    return this.#loaded;
  }
}
