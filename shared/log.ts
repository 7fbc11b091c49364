/**
 * Logging to stderr: JSON lines, or one human line per event on a terminal.
 *
 * One line per event: `time`, `level`, `component`, a fixed event phrase in
 * `msg`, then fields from one list (see {@link LogFields}). Keys, tokens and
 * request bodies are never passed in; a certificate appears as its serial or
 * fingerprint. Tests read the JSON lines to learn bound addresses.
 *
 * The process-wide {@link configureLogs} picks the form (`json`, `text`, or
 * `auto`: text when stderr is a terminal) and the lowest level shown; every
 * logger without its own sink or level follows it.
 *
 * @example
 * ```ts
 * const log = new Logger("ca");
 * log.info("certificate issued", { user: "root", serial: "ab12" });
 * ```
 */
import { safeJson } from "./errors.ts";

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The log levels, for `--log-level`. */
export const LOG_LEVELS: LogLevel[] = ["debug", "info", "warn", "error"];

/** How lines are written: JSON, human text, or text only when stderr is a terminal. */
export type LogFormat = "json" | "text" | "auto";

/** The log forms, for `--log-format`. */
export const LOG_FORMATS: LogFormat[] = ["auto", "json", "text"];

const settings: { level: LogLevel; text: boolean } = { level: "info", text: false };

/**
 * Sets the process-wide log form and level (what `--log-format` and
 * `--log-level` choose). `auto` writes text when stderr is a terminal, JSON
 * otherwise (what tests and log collectors read).
 */
export function configureLogs(options: { format?: LogFormat; level?: LogLevel }): void {
  if (options.level) settings.level = options.level;
  if (options.format) {
    settings.text = options.format === "text" ||
      (options.format === "auto" && stderrIsTerminal());
  }
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** One event as a human line: `15:04:05.123 INFO  hub  listening addr=0.0.0.0:8888`. */
export function formatText(entry: Record<string, unknown>): string {
  const time = String(entry.time ?? "").slice(11, 23);
  const level = String(entry.level ?? "").toUpperCase().padEnd(5);
  const component = String(entry.component ?? "").padEnd(5);
  const fields = Object.entries(entry)
    .filter(([k, v]) => !["time", "level", "component", "msg"].includes(k) && v !== undefined)
    .map(([k, v]) => {
      const text = typeof v === "string" ? v : JSON.stringify(v);
      return `${k}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
    });
  // deno-lint-ignore no-control-regex
  const safe = (t: string) => t.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return safe([time, level, component, entry.msg, ...fields].join(" "));
}

/** The field names every component uses; keep to these so logs can be queried. */
export interface LogFields {
  addr?: string;
  mesh?: string;
  endpoint?: string;
  /** The value something had before (e.g. an endpoint's old id). */
  from?: string;
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
  /** An invite's id (never its secret). */
  invite?: string;
  /** The serial of the certificate a renewal replaced. */
  previous?: string;
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
  #level: LogLevel | undefined;
  #sink: LogSink | undefined;

  /** A logger for `component`; without `level` or `sink` it follows {@link configureLogs}. */
  constructor(component: string, options: { level?: LogLevel; sink?: LogSink } = {}) {
    this.component = component;
    this.#level = options.level;
    this.#sink = options.sink;
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
    if (LEVELS[level] < LEVELS[this.#level ?? settings.level]) return;
    const entry = {
      time: new Date().toISOString(),
      level,
      component: this.component,
      msg,
      ...fields,
    };
    // Fields carry what members and hubs sent; the line must not drive the terminal it lands on
    // (the text form replaces control characters itself).
    const line = this.#sink || !settings.text ? safeJson(JSON.stringify(entry)) : formatText(entry);
    try {
      (this.#sink ?? stderrSink)(line);
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
