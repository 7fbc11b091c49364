/**
 * The dashboard's screens as hash routes (`#/m/work/endpoints?q=web&page=2`),
 * so the agent serves one page at `/` and the browser's back button and
 * bookmarks work. The server renders `{ view: "status" }`; the client reads
 * the hash after hydrating.
 */
import { signal } from "@preact/signals";

/** One screen and its parameters. */
export type Route =
  | { view: "status" }
  | { view: "join" }
  | { view: "endpoints"; mesh: string; q: string; page: number }
  | { view: "endpoint"; mesh: string; ep: string; page: number }
  | { view: "services"; mesh: string; q: string; page: number }
  | { view: "invite"; mesh: string };

/** The current screen. */
export const route = signal<Route>({ view: "status" });

/** Parses a location hash; unknown hashes are the status screen. */
export function parseHash(hash: string): Route {
  const [path, search = ""] = hash.replace(/^#/, "").split("?", 2);
  const params = new URLSearchParams(search);
  const page = Math.max(1, Number.parseInt(params.get("page") ?? "1", 10) || 1);
  const q = params.get("q") ?? "";
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === "join") return { view: "join" };
  if (parts[0] === "m" && parts[1]) {
    const mesh = parts[1];
    if (parts[2] === "endpoints" && parts[3]) return { view: "endpoint", mesh, ep: parts[3], page };
    if (parts[2] === "endpoints") return { view: "endpoints", mesh, q, page };
    if (parts[2] === "services") return { view: "services", mesh, q, page };
    if (parts[2] === "invite") return { view: "invite", mesh };
  }
  return { view: "status" };
}

/** The hash for a route (`#/…`). */
export function hrefOf(r: Route): string {
  const enc = encodeURIComponent;
  const search = (q: string, page: number) => {
    const p = new URLSearchParams();
    if (q) p.set("q", q);
    if (page > 1) p.set("page", String(page));
    const s = p.toString();
    return s ? `?${s}` : "";
  };
  switch (r.view) {
    case "status":
      return "#/";
    case "join":
      return "#/join";
    case "endpoints":
      return `#/m/${enc(r.mesh)}/endpoints${search(r.q, r.page)}`;
    case "endpoint":
      return `#/m/${enc(r.mesh)}/endpoints/${enc(r.ep)}${search("", r.page)}`;
    case "services":
      return `#/m/${enc(r.mesh)}/services${search(r.q, r.page)}`;
    case "invite":
      return `#/m/${enc(r.mesh)}/invite`;
  }
}

/** Goes to `r`: sets the hash (the `hashchange` listener updates {@link route}). */
export function navigate(r: Route, replace = false): void {
  const href = hrefOf(r);
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route.value = r;
}
