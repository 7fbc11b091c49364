/**
 * The HTTP plumbing shared by the CA and the agent's local API.
 *
 * An app is a function from `Request` to `Response`. Routes are a literal
 * table of `{ method, pattern, handler }`; `createRouter` matches them (404 for
 * unknown paths, 405 with `Allow` for wrong methods); `serveHttp` wraps the
 * app with one error renderer and an access log. Bodies are read through
 * `readText`/`readJsonObject`, which enforce a byte limit (413).
 *
 * @example
 * ```ts
 * const app = createRouter([{ method: "GET", pattern: "/api/x/:name", handler: (_req, p) => json({ name: p.name }) }]);
 * const server = serveHttp({ listen: { hostname: "127.0.0.1", port: 0 }, app, log });
 * ```
 */
import { errorBody, MethodNotAllowed, PayloadTooLarge, sharedError } from "./errors.ts";
import { formatHostPort, type HostPort, isLoopbackHost } from "./flags.ts";
import { errText, type Logger } from "./log.ts";
import { concatBytes } from "./concat_bytes.ts";

/** Path parameters by name, already percent-decoded. */
export type Params = Record<string, string>;
/** A route handler. Throws `ZtmError`s for refusals. */
export type Handler = (req: Request, params: Params) => Response | Promise<Response>;
/** An app: the whole server as one function. */
export type App = (req: Request) => Promise<Response>;

/** One row of a route table; `pattern` segments starting with `:` are parameters. */
export interface Route {
  method: string;
  pattern: string;
  handler: Handler;
}

/** A JSON response. */
export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** A text response (PEM and the like). */
export function text(
  body: string,
  status = 200,
  contentType = "text/plain; charset=utf-8",
): Response {
  return new Response(body, { status, headers: { "content-type": contentType } });
}

/**
 * Finds the route for `method` and `path` in a table. Throws `NotFound` for an
 * unknown path and `MethodNotAllowed` when only other methods match.
 */
export function findRoute<R extends { method: string; pattern: string }>(
  routes: R[],
  method: string,
  path: string,
): { route: R; params: Params } {
  const segments = path.split("/");
  const allowed: string[] = [];
  for (const route of routes) {
    const params = matchSegments(route.pattern.split("/"), segments);
    if (!params) continue;
    if (route.method === method) return { route, params };
    if (!allowed.includes(route.method)) allowed.push(route.method);
  }
  if (allowed.length) throw new MethodNotAllowed(allowed);
  throw sharedError("unknown_route", `No route for ${path}`);
}

/** Builds an app from a route table. */
export function createRouter(routes: Route[]): App {
  return async (req) => {
    const { route, params } = findRoute(routes, req.method, new URL(req.url).pathname);
    return await route.handler(req, params);
  };
}

function matchSegments(pattern: string[], path: string[]): Params | undefined {
  if (pattern.length !== path.length) return undefined;
  const params: Params = {};
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i].startsWith(":")) {
      try {
        params[pattern[i].slice(1)] = decodeURIComponent(path[i]);
      } catch {
        throw sharedError("bad_path", "Path is not valid percent-encoding");
      }
    } else if (pattern[i] !== path[i]) {
      return undefined;
    }
  }
  return params;
}

/** Reads the body as bytes, refusing more than `limit` bytes with 413. */
export async function readBytes(req: Request, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new PayloadTooLarge(limit);
  if (!req.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.byteLength;
    if (size > limit) throw new PayloadTooLarge(limit);
    chunks.push(chunk);
  }
  return concatBytes(chunks);
}

/** Reads the body as UTF-8 text within `limit` bytes. */
export async function readText(req: Request, limit: number): Promise<string> {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await readBytes(req, limit));
  } catch (err) {
    if (err instanceof TypeError) throw sharedError("bad_encoding", "Body is not UTF-8");
    throw err;
  }
}

/** Reads the body as a JSON object within `limit` bytes; 400 for anything else. */
export async function readJsonObject(
  req: Request,
  limit: number,
): Promise<Record<string, unknown>> {
  return parseJsonObject(await readText(req, limit));
}

/** Parses text as a JSON object; `BadRequest` (`bad_json`) for anything else. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw sharedError("bad_json", "Body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw sharedError("bad_json", "Body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** The host part of a `Host` header (`[::1]:80` → `::1`). */
export function hostOfHeader(host: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(host);
  if (v6) return v6[1];
  return host.replace(/:\d*$/, "");
}

/**
 * Refuses DNS rebinding and cross-site requests: with `loopbackOnly`, a `Host`
 * that is not a loopback name is 403; any `Origin` other than the server's own
 * (`http://` + the request's `Host`) is 403. Requests with no `Origin` (curl,
 * the CLI) pass.
 */
export function checkHostAndOrigin(req: Request, loopbackOnly: boolean): void {
  const host = req.headers.get("host") ?? "";
  if (loopbackOnly && !isLoopbackHost(hostOfHeader(host))) {
    throw sharedError("foreign_host", `Host "${host}" is not a loopback name`);
  }
  const origin = req.headers.get("origin");
  if (origin !== null && origin !== `http://${host}`) {
    throw sharedError("foreign_origin", `Origin "${origin}" may not use this API`);
  }
}

/** True when a bearer token in `Authorization` equals `token` (constant-time compare). */
export function hasBearerToken(req: Request, token: string): boolean {
  const header = req.headers.get("authorization") ?? "";
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) return false;
  const a = new TextEncoder().encode(m[1]);
  const b = new TextEncoder().encode(token);
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** A running HTTP server. */
export interface HttpServer {
  /** The bound address (the real port when asked for port 0). */
  addr: HostPort;
  /** Stops accepting and waits for open requests to end. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/**
 * Serves `app` on `listen`, rendering thrown errors as JSON and writing one
 * access-log line per request (at debug level: `--log-level=debug`). Logs `listening` with the bound `addr`.
 */
export function serveHttp(options: { listen: HostPort; app: App; log: Logger }): HttpServer {
  const { app, log } = options;
  const handler = async (req: Request): Promise<Response> => {
    const started = performance.now();
    let res: Response;
    try {
      res = await app(req);
    } catch (err) {
      const { status, body } = errorBody(err);
      if (status >= 500) log.error("request failed", { method: req.method, err: errText(err) });
      const headers: HeadersInit = err instanceof MethodNotAllowed
        ? { allow: err.allow.join(", ") }
        : {};
      res = json(body, status, headers);
    }
    log.debug("request", {
      method: req.method,
      path: new URL(req.url).pathname,
      status: res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
    });
    return res;
  };
  let bound: HostPort = options.listen;
  const server = Deno.serve({
    hostname: options.listen.hostname,
    port: options.listen.port,
    onListen: (addr) => {
      bound = { hostname: addr.hostname, port: addr.port };
      log.info("listening", { addr: formatHostPort(bound) });
    },
  }, handler);
  return {
    get addr() {
      return bound;
    },
    shutdown: () => server.shutdown(),
    finished: server.finished,
  };
}

/** Paging and search parameters of a list query. */
export interface PageParams {
  offset: number;
  limit: number;
  q?: string;
}

/**
 * Reads `offset` (default 0), `limit` (1..maxLimit, default `defaultLimit`) and
 * `q` from a query string. Throws `BadRequest` (`bad_query`) naming the bad value.
 */
export function parsePageParams(
  search: URLSearchParams,
  defaultLimit = 100,
  maxLimit = 500,
): PageParams {
  const int = (name: string, fallback: number, min: number, max: number) => {
    const v = search.get(name);
    if (v === null || v === "") return fallback;
    const n = Number(v);
    if (!/^\d{1,9}$/.test(v) || n < min || n > max) {
      throw sharedError(
        "bad_query",
        `Query "${name}" must be a whole number from ${min} to ${max}`,
      );
    }
    return n;
  };
  const q = search.get("q") ?? undefined;
  if (q !== undefined && q.length > 200) {
    throw sharedError("bad_query", `Query "q" is longer than 200 characters`);
  }
  return {
    offset: int("offset", 0, 0, 1e9),
    limit: int("limit", defaultLimit, 1, maxLimit),
    q: q || undefined,
  };
}
