/**
 * Who may use the agent's local API (as Syncthing and Jupyter do it): a
 * request carries the API token as `Authorization: Bearer`, or a dashboard
 * session from a one-time login URL.
 *
 * A dashboard session has two halves, and the API wants both: an `HttpOnly`
 * cookie, and a secret the login page hands the dashboard's script, which
 * keeps it in the origin's `localStorage` and sends it as `x-ztm-session`.
 * The cookie alone is not enough because browsers scope cookies by host, not
 * by port: every web app on 127.0.0.1 that the browser visits (one reached
 * through a port mapping too) receives it. Storage is scoped by origin
 * (scheme, host and port), so only pages of the agent's own origin read the
 * secret; another origin's script cannot send the header to the agent either
 * (a custom header needs a CORS preflight, which the agent never grants, and
 * the API refuses foreign `Origin`s). The cookie still decides whether `/`
 * shows the dashboard or the sign-in page, but the page it gets holds no data.
 *
 * The token lives in a `0600` file the CLI reads; login codes are random,
 * single-use and expire after ten minutes; sessions live in memory, so a
 * restarted agent asks the browser to log in again.
 */
import { SESSION_COOKIE, SESSION_HEADER } from "@ztm/shared/agent_api";
import { hasBearerToken } from "@ztm/shared/http";

// The contract's names for a session's cookie and header, for this package's modules.
export { SESSION_COOKIE, SESSION_HEADER };
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

/** A dashboard session: the cookie's value, and the secret only the dashboard's origin keeps. */
export interface Session {
  cookie: string;
  secret: string;
}

/** The token, login codes and browser sessions of one agent. Safe to call from any request. */
export class ApiAccess {
  #token: string;
  #codes = new Map<string, number>();
  /** Session secrets by cookie value. */
  #sessions = new Map<string, string>();

  constructor(token: string) {
    this.#token = token;
  }

  /** True when `req` carries the token, or a live session's cookie and its secret. */
  authorized(req: Request): boolean {
    if (hasBearerToken(req, this.#token)) return true;
    const secret = this.#secretOf(req);
    return secret !== undefined && sameText(req.headers.get(SESSION_HEADER) ?? "", secret);
  }

  /**
   * True when `req` carries a live session's cookie, with or without its
   * secret: enough to get the dashboard's empty page, never data.
   */
  hasSessionCookie(req: Request): boolean {
    return this.#secretOf(req) !== undefined;
  }

  /** A new one-time login code. */
  newLoginCode(now = Date.now()): string {
    for (const [code, expires] of this.#codes) if (expires < now) this.#codes.delete(code);
    if (this.#codes.size >= MAX_OPEN_CODES) this.#codes.delete(this.#codes.keys().next().value!);
    const code = randomHex(32);
    this.#codes.set(code, now + CODE_LIFETIME_MS);
    return code;
  }

  /** Spends `code`; returns a new session, or undefined if the code is unknown, used or expired. */
  redeem(code: string, now = Date.now()): Session | undefined {
    const expires = this.#codes.get(code);
    this.#codes.delete(code);
    if (expires === undefined || expires < now) return undefined;
    if (this.#sessions.size >= MAX_SESSIONS) {
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
    const session = { cookie: randomHex(32), secret: randomHex(32) };
    this.#sessions.set(session.cookie, session.secret);
    return session;
  }

  /** The `Set-Cookie` value for a session of the API that `req` reached. */
  static cookie(session: Session, req: Request): string {
    return `${cookieName(req)}=${session.cookie}; HttpOnly; SameSite=Strict; Path=/`;
  }

  #secretOf(req: Request): string | undefined {
    const header = req.headers.get("cookie");
    if (!header) return undefined;
    const name = cookieName(req);
    for (const part of header.split(";")) {
      const [key, value] = part.trim().split("=", 2);
      if (key === name && value) return this.#sessions.get(value);
    }
    return undefined;
  }
}

/**
 * The session cookie's name for the API `req` reached: with the port, so two
 * agents on one machine do not overwrite each other's cookie (browsers share
 * cookies across ports; the name alone protects nothing).
 */
function cookieName(req: Request): string {
  const port = /:(\d{1,5})$/.exec(req.headers.get("host") ?? "")?.[1] ?? "80";
  return `${SESSION_COOKIE}_${port}`;
}

/** Constant-time comparison of two strings. */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}
