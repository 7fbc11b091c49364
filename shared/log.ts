/**
 * JSON-lines logging to stderr.
 *
 * One line per event: `time`, `level`, `component`, a fixed event phrase in
 * `msg`, then fields from one list (see {@link LogFields}). Keys, tokens and
 * request bodies are never passed in; a certificate appears as its serial or
 * fingerprint. Tests read these lines to learn bound addresses.
 *
 * @example
 * ```ts
 * const log = new Logger("ca");
 * log.info("certificate issued", { user: "root", serial: "ab12" });
 * ```
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The field names every component uses; keep to these so logs can be queried. */
export interface LogFields {
  addr?: string;
  mesh?: string;
  endpoint?: string;
  user?: string;
  service?: string;
  serial?: string;
  fingerprint?: string;
  peer?: string;
  method?: string;
  path?: string;
  status?: number;
  code?: string;
  ms?: number;
  bytes?: number;
  count?: number;
  /** A CRL's number. */
  crl?: number;
  file?: string;
  version?: string;
  err?: string;
}

/** Where lines go; tests may pass their own. */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();
const stderrSink: LogSink = (line) => {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
};

/** A logger bound to one component. Safe to call from any async context. */
export class Logger {
  readonly component: string;
  #min: number;
  #sink: LogSink;

  constructor(component: string, options: { level?: LogLevel; sink?: LogSink } = {}) {
    this.component = component;
    this.#min = LEVELS[options.level ?? "info"];
    this.#sink = options.sink ?? stderrSink;
  }

  debug(msg: string, fields?: LogFields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#write("error", msg, fields);
  }

  #write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.#min) return;
    const line = JSON.stringify({
      time: new Date().toISOString(),
      level,
      component: this.component,
      msg,
      ...fields,
    });
    try {
      this.#sink(line);
    } catch {
      // stderr closed (parent gone): nothing left to tell.
    }
  }
}

/** A one-line description of an error for the `err` field; never includes a stack. */
export function errText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
