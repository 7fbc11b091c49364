/**
 * The failure catalogue shared by every ztm component.
 *
 * Handlers throw one of these; a single wrapper (see `http.ts`) renders it as
 * `{"error":{"code","message"}}` with its status. Anything that is not a
 * `ZtmError` becomes a 500 whose details go to the log only.
 *
 * Each component lists the codes it raises, with their statuses, in one
 * catalogue (`SHARED_ERRORS` here, `AGENT_ERRORS` in `agent_api.ts`,
 * `CA_ERRORS` in `ca/errors.ts`, `HUB_ERRORS` in `hub/errors.ts`,
 * `CLI_ERRORS` in `cli/errors.ts`) and makes its errors from it with
 * `errorMaker`, so a code has one status and one place to look it up.
 *
 * @example
 * ```ts
 * const caError = errorMaker({ unknown_certificate: 404 });
 * throw caError("unknown_certificate", `Unknown certificate "${name}"`); // a NotFound
 * ```
 */

/** Base error: an HTTP status, a stable machine-readable code and a message safe to show. */
export class ZtmError extends Error {
  /** HTTP status this error is rendered with. */
  readonly status: number;
  /** Stable snake_case code, e.g. `name_taken`. */
  readonly code: string;

  constructor(status: number, code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
  }
}

/** 400: the request is malformed or names something invalid. */
export class BadRequest extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(400, code, message, options);
  }
}

/** 401: no valid credentials were presented. */
export class Unauthorized extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(401, code, message, options);
  }
}

/** 403: credentials are valid but do not allow this. */
export class Forbidden extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(403, code, message, options);
  }
}

/** 404: the named thing does not exist. */
export class NotFound extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(404, code, message, options);
  }
}

/** 405: the route exists but not with this method. */
export class MethodNotAllowed extends ZtmError {
  /** Methods the route does accept, for the `Allow` header. */
  readonly allow: string[];
  constructor(allow: string[]) {
    super(405, "method_not_allowed", `Method not allowed; use ${allow.join(", ")}`);
    this.allow = allow;
  }
}

/** 409: the request conflicts with existing state. */
export class Conflict extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(409, code, message, options);
  }
}

/** 413: the request body is over the route's limit. */
export class PayloadTooLarge extends ZtmError {
  constructor(limit: number) {
    super(413, "body_too_large", `Request body is larger than ${limit} bytes`);
  }
}

/** 429: a limit on sessions, streams or requests was reached. */
export class TooManyRequests extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(429, code, message, options);
  }
}

/** 501: the route is known but not available yet. */
export class NotImplemented extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(501, code, message, options);
  }
}

/** 503: a dependency (CA, hub, peer) is unreachable right now. */
export class ServiceUnavailable extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(503, code, message, options);
  }
}

/** 504: a peer did not answer in time. */
export class GatewayTimeout extends ZtmError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(504, code, message, options);
  }
}

/** JSON body of an error response. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** A base64 run this long with mixed case and a digit or `+`/`/` is key material, not a name. */
const BASE64_RUN = /[A-Za-z0-9+/=]{40,}/g;

/**
 * `message` with PEM markers and long base64 runs cut out. Messages name the
 * bad value they were given, and a value can be a private key pasted into the
 * wrong field (an endpoint name, a user list): the answer must not carry it
 * back, to a screen or a log.
 */
export function withoutKeyMaterial(message: string): string {
  return message
    .replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, "[PEM]")
    .replace(
      BASE64_RUN,
      (run) =>
        /[A-Z]/.test(run) && /[a-z]/.test(run) && /[0-9+/]/.test(run) ? `${run.slice(0, 4)}…` : run,
    );
}

/**
 * Control characters (C0, DEL, C1), bidirectional overrides and line
 * separators: what lets a string move a terminal's cursor, retitle its
 * window, clear it or make text read other than it is stored.
 */
const CONTROL_CHARS = /[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

/** True when `text` holds a control character (see `safeText`): input checks refuse those. */
export function hasControlChars(text: string): boolean {
  return text.search(CONTROL_CHARS) >= 0;
}

/**
 * `text` with every control character written as an escape (`\x1b`,
 * `\u202e`): safe to show on a terminal or a page, and still telling what
 * was sent. Messages naming a bad value pass through it, and the CLI passes
 * whatever another member controls through it before printing.
 *
 * @example
 * ```ts
 * safeText("a\x1b[2Jb"); // "a\\x1b[2Jb"
 * ```
 */
export function safeText(text: string): string {
  return text.replace(CONTROL_CHARS, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/**
 * JSON text with every control character that JSON leaves raw (DEL, C1,
 * bidirectional controls, line separators) written as a `\u` escape: the
 * same JSON value, safe on a terminal. For JSON that goes to a screen or a log.
 */
export function safeJson(json: string): string {
  // Not C0: inside strings JSON escapes it already, outside it is indentation.
  return json.replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Renders any thrown value as the JSON error body and status; unknown errors
 * become 500. Key material in a message is cut (see `withoutKeyMaterial`) and
 * control characters are escaped (`safeText`).
 */
export function errorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ZtmError) {
    return {
      status: err.status,
      body: { error: { code: err.code, message: safeText(withoutKeyMaterial(err.message)) } },
    };
  }
  return {
    status: 500,
    body: { error: { code: "internal", message: "Internal error; see the server log" } },
  };
}

const ERRORS_BY_STATUS: Record<
  number,
  new (code: string, message: string, options?: ErrorOptions) => ZtmError
> = {
  400: BadRequest,
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  429: TooManyRequests,
  501: NotImplemented,
  503: ServiceUnavailable,
  504: GatewayTimeout,
};

/**
 * A component's error codes, each with the status it is answered with. A code
 * that means the same failure seen from two sides may carry two statuses (its
 * maker is then given the status at the call).
 */
export type CodeCatalogue = Readonly<Record<string, number | readonly number[]>>;

type SingleCode<C extends CodeCatalogue> = {
  [K in keyof C & string]: C[K] extends number ? K : never;
}[keyof C & string];
type MultiCode<C extends CodeCatalogue> = {
  [K in keyof C & string]: C[K] extends readonly number[] ? K : never;
}[keyof C & string];

/** Makes the error of a catalogue's code: the class of its status, with `message`. */
export interface ErrorMaker<C extends CodeCatalogue> {
  (code: SingleCode<C>, message: string, options?: ErrorOptions): ZtmError;
  <K extends MultiCode<C>>(
    code: K,
    status: C[K] extends readonly number[] ? C[K][number] : never,
    message: string,
    options?: ErrorOptions,
  ): ZtmError;
}

/**
 * The maker of `catalogue`'s errors. The error is the class of the code's
 * status (`NotFound` for 404, …; `ZtmError` itself for statuses without a
 * class, such as 413 or 502), so `instanceof` checks keep working.
 *
 * @example
 * ```ts
 * const agentError = errorMaker({ unknown_mesh: 404 });
 * throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
 * ```
 */
export function errorMaker<C extends CodeCatalogue>(catalogue: C): ErrorMaker<C> {
  return ((code: string, ...rest: unknown[]) => {
    const listed = catalogue[code];
    const status = typeof listed === "number" ? listed : rest.shift() as number;
    const [message, options] = rest as [string, ErrorOptions | undefined];
    const Class = ERRORS_BY_STATUS[status];
    return Class ? new Class(code, message, options) : new ZtmError(status, code, message, options);
  }) as ErrorMaker<C>;
}

/** The codes `shared/` raises itself (routing, bodies, certificates, control lines, signed requests). */
export const SHARED_ERRORS = {
  // Rendering (`errorBody`) and clients (`errorFromResponse`)
  internal: 500,
  /** A client's code for an error answer that is not a ztm error body; it keeps the answer's status. */
  http_error: 500,
  // Routing and bodies (`http.ts`)
  unknown_route: 404,
  method_not_allowed: 405,
  bad_path: 400,
  bad_query: 400,
  bad_json: 400,
  bad_encoding: 400,
  body_too_large: 413,
  foreign_host: 403,
  foreign_origin: 403,
  // Certificates and invites (`certs.ts`, `invite.ts`)
  bad_certificate: 400,
  bad_csr: 400,
  bad_private_key: 400,
  bad_invite: 400,
  // Control messages (`protocol.ts`)
  bad_message: 400,
  unknown_message: 400,
  bad_services: 400,
  control_line_too_large: 413,
  // Signed requests and answers (`signed_request.ts`)
  bad_signed_request: 400,
  bad_signature: 401,
  expired_request: 401,
  replayed_request: 401,
  revoked_certificate: 401,
  untrusted_certificate: 401,
  wrong_target: 403,
  too_many_requests: 429,
  unsigned_answer: 502,
  forged_answer: 502,
  // One process per state database (`state_lock.ts`)
  state_in_use: 409,
} as const satisfies CodeCatalogue;

/** Makes the errors of `SHARED_ERRORS`. */
export const sharedError: ErrorMaker<typeof SHARED_ERRORS> = errorMaker(SHARED_ERRORS);

/**
 * The error a client raises for an error answer: the class of `status`
 * (`ZtmError` itself for other statuses) with the body's `code` and `message`,
 * or, for a body that is not a ztm error, the status and the start of the text.
 */
export function errorFromResponse(status: number, bodyText: string): ZtmError {
  let code = "http_error";
  let message = bodyText.trim().slice(0, 200) || `HTTP status ${status}`;
  try {
    const parsed = JSON.parse(bodyText)?.error;
    if (typeof parsed?.code === "string" && typeof parsed?.message === "string") {
      code = parsed.code;
      message = parsed.message;
    }
  } catch { /* not JSON: keep the text */ }
  const Class = ERRORS_BY_STATUS[status];
  if (Class) return new Class(code, message);
  return new ZtmError(status, code, message);
}
