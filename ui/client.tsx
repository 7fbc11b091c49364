/** @jsxImportSource preact */
/**
 * The bundle's entry: hydrates each `[data-island]` element with the props
 * the server embedded next to it, then follows the location hash. One click
 * handler serves every copy button (`button[data-copy]`), on any page.
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

addEventListener("click", (e) => {
  const button = (e.target as Element | null)?.closest?.("button[data-copy]");
  if (!(button instanceof HTMLButtonElement)) return;
  void copyText(button.dataset.copy ?? "").then((ok) => {
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = "Copy"), 2_000);
  });
});

/** Puts `text` on the clipboard; true when it worked. */
async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (an insecure context): the old way, through a selected text area.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
