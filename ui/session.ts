/**
 * The dashboard's half of its session with the agent (see the agent's
 * `access.ts`): the login page carries the session's secret in a `<meta>`;
 * the script moves it to this origin's `localStorage` (scoped by scheme, host
 * and port, so other web apps on 127.0.0.1 cannot read it, while every tab
 * of the dashboard can) and sends it with every API call as `x-ztm-session`.
 * The cookie the browser also holds is not enough without it.
 */
import { SESSION_HEADER } from "@ztm/shared/agent_paths";

/** Name of the `<meta>` that carries a fresh login's secret. */
export const SESSION_META = "ztm-session";
const STORAGE_KEY = "ztm-session";

/** The secret when the browser refuses storage (then it lasts as long as the page). */
let inMemory: string | undefined;

/**
 * Takes a fresh login's secret out of the page into storage and moves the
 * address from the spent login URL to `/`. Call once, before the first API call.
 */
export function adoptSession(): void {
  const meta = document.querySelector<HTMLMetaElement>(`meta[name="${SESSION_META}"]`);
  if (!meta) return;
  inMemory = meta.content;
  try {
    localStorage.setItem(STORAGE_KEY, meta.content);
  } catch {
    // storage switched off: keep it in memory only
  }
  meta.remove();
  if (location.pathname !== "/") history.replaceState(null, "", `/${location.hash}`);
}

/** The header that proves this page's session, or none before a login. */
export function sessionHeaders(): Record<string, string> {
  let secret = inMemory;
  try {
    secret = localStorage.getItem(STORAGE_KEY) ?? secret;
  } catch {
    // storage switched off
  }
  return secret ? { [SESSION_HEADER]: secret } : {};
}
