/**
 * The failure catalogue shared by every ztm component.
 *
 * Handlers throw one of these; a single wrapper (see `http.ts`) renders it as
 * `{"error":{"code","message"}}` with its status. Anything that is not a
 * `ZtmError` becomes a 500 whose details go to the log only.
 *
 * @example
 * ```ts
 * throw new NotFound("unknown_certificate", `Unknown certificate "${name}"`);
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
 * Renders any thrown value as the JSON error body and status; unknown errors
 * become 500. Key material in a message is cut (see `withoutKeyMaterial`).
 */
export function errorBody(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ZtmError) {
    return {
      status: err.status,
      body: { error: { code: err.code, message: withoutKeyMaterial(err.message) } },
    };
  }
  return {
    status: 500,
    body: { error: { code: "internal", message: "Internal error; see the server log" } },
  };
}

const ERRORS_BY_STATUS: Record<number, new (code: string, message: string) => ZtmError> = {
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
