/**
 * Who may use the agent's local API (DESIGN section 4, as Syncthing and
 * Jupyter do it): a request carries the API token as `Authorization: Bearer`,
 * or a session cookie the browser got from a one-time login URL.
 *
 * The token lives in a `0600` file the CLI reads; login codes are random,
 * single-use and expire after ten minutes; sessions live in memory, so a
 * restarted agent asks the browser to log in again.
 */
import { hasBearerToken } from "@ztm/shared/http";

/** Name of the dashboard's session cookie. */
export const SESSION_COOKIE = "ztm_session";
const CODE_LIFETIME_MS = 10 * 60_000;
const MAX_OPEN_CODES = 100;
const MAX_SESSIONS = 1000;

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** The token, login codes and browser sessions of one agent. Safe to call from any request. */
export class ApiAccess {
  #token: string;
  #codes = new Map<string, number>();
  #sessions = new Set<string>();

  constructor(token: string) {
    this.#token = token;
  }

  /** True when `req` carries the token or a live session cookie. */
  authorized(req: Request): boolean {
    if (hasBearerToken(req, this.#token)) return true;
    const session = sessionOf(req);
    return session !== undefined && this.#sessions.has(session);
  }

  /** A new one-time login code. */
  newLoginCode(now = Date.now()): string {
    for (const [code, expires] of this.#codes) if (expires < now) this.#codes.delete(code);
    if (this.#codes.size >= MAX_OPEN_CODES) this.#codes.delete(this.#codes.keys().next().value!);
    const code = randomHex(32);
    this.#codes.set(code, now + CODE_LIFETIME_MS);
    return code;
  }

  /** Spends `code`; returns a new session id, or undefined if the code is unknown, used or expired. */
  redeem(code: string, now = Date.now()): string | undefined {
    const expires = this.#codes.get(code);
    this.#codes.delete(code);
    if (expires === undefined || expires < now) return undefined;
    if (this.#sessions.size >= MAX_SESSIONS) {
      this.#sessions.delete(this.#sessions.values().next().value!);
    }
    const session = randomHex(32);
    this.#sessions.add(session);
    return session;
  }

  /** The `Set-Cookie` value for a session. */
  static cookie(session: string): string {
    return `${SESSION_COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`;
  }
}

function sessionOf(req: Request): string | undefined {
  const header = req.headers.get("cookie");
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const [name, value] = part.trim().split("=", 2);
    if (name === SESSION_COOKIE && value) return value;
  }
  return undefined;
}
