/** @jsxImportSource preact */
/**
 * The bundle's entry: hydrates each `[data-island]` element with the props
 * the server embedded next to it, then follows the location hash.
 */
import { hydrate } from "preact";
import type { DashboardProps } from "./api_types.ts";
import { App, initState } from "./app.tsx";
import { parseHash, route } from "./route.ts";
import { adoptSession } from "./session.ts";

const ISLANDS = { app: App } as const;

adoptSession();

for (const el of document.querySelectorAll<HTMLElement>("[data-island]")) {
  const name = el.dataset.island as keyof typeof ISLANDS;
  const Island = ISLANDS[name];
  const propsEl = document.getElementById(`${el.id}-props`);
  if (!Island || !propsEl) continue;
  const props = JSON.parse(propsEl.textContent ?? "{}") as DashboardProps;
  initState(props);
  hydrate(<Island {...props} />, el);
}

const follow = () => (route.value = parseHash(location.hash));
addEventListener("hashchange", follow);
addEventListener("popstate", follow);
follow();
