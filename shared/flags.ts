/**
 * Command-line flags for every ztm command, on `node:util` `parseArgs`.
 *
 * A command declares its flags once (name, kind, default, help); `parseCommandLine`
 * handles `--help` and `--version`, expands `~` in paths, validates addresses and
 * numbers, and exits 2 with one line and the usage on a bad flag.
 *
 * @example
 * ```ts
 * const flags = parseCommandLine(CA_COMMAND, Deno.args);
 * const listen = flags.address("listen"); // { hostname: "127.0.0.1", port: 9999 }
 * ```
 */
import { parseArgs } from "node:util";
import { ConfigError, withConfig } from "./config.ts";
import { UsageError } from "./usage_error.ts";
import { configureLogs, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";
import { VERSION } from "./version.ts";

/** How a flag's text is read and checked. */
export type FlagKind =
  | "string"
  | "path"
  | "address"
  | "address-or-off"
  | "addresses"
  | "integer"
  | "boolean";

/** One declared flag. */
export interface FlagSpec {
  name: string;
  kind: FlagKind;
  /** Default as the user would type it; `undefined` means required unless `optional`. */
  default?: string;
  optional?: boolean;
  /** The only values allowed (a `string` flag), listed in `--help`. */
  choices?: string[];
  /**
   * Former names still accepted on the command line and as config keys (each
   * is read as this flag), listed in `--help`, so old service files keep working.
   */
  oldSpellings?: string[];
  help: string;
}

/** `--log-format` and `--log-level`, for every command that runs a component. */
export const LOG_FLAGS: FlagSpec[] = [
  {
    name: "log-format",
    kind: "string",
    default: "auto",
    choices: LOG_FORMATS,
    help: "log lines as json, or text for people (auto: text on a terminal, else json)",
  },
  {
    name: "log-level",
    kind: "string",
    default: "info",
    choices: LOG_LEVELS,
    help: "lowest level logged (debug adds a line per API request)",
  },
];

/** Applies `--log-format` and `--log-level` (see {@link LOG_FLAGS}) to every logger of the process. */
export function applyLogFlags(flags: Flags): void {
  configureLogs({
    format: flags.string("log-format") as LogFormat,
    level: flags.string("log-level") as LogLevel,
  });
}

/** One positional argument, e.g. `MESH` in `ztm join MESH`. */
export interface ArgSpec {
  /** As shown in the usage line, e.g. `MESH`. */
  name: string;
  help: string;
  optional?: boolean;
}

/** A command: its name as typed, a one-line summary, its positional arguments and its flags. */
export interface CommandSpec {
  name: string;
  summary: string;
  /** Positional arguments in order; a command without them refuses any. */
  args?: ArgSpec[];
  flags: FlagSpec[];
  /** Keys of the command's `--config` table that are not flags, read by the command itself. */
  configTables?: string[];
  examples?: string[];
}

/** A host and TCP port. */
export interface HostPort {
  hostname: string;
  port: number;
}

export { UsageError } from "./usage_error.ts";

/** Expands a leading `~` to the home directory. */
export function expandHome(path: string): string {
  if (path !== "~" && !path.startsWith("~/")) return path;
  const home = Deno.env.get("HOME");
  if (!home) throw new UsageError(`Cannot expand "~" in "${path}": HOME is not set`);
  return home + path.slice(1);
}

/**
 * Parses `host:port`, `[v6]:port`, or `:port`; `defaultPort` fills a missing port.
 * Throws `UsageError` naming the value.
 */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  let host = text;
  let portText: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d*))?$/.exec(text);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (text.includes(":")) {
    const at = text.lastIndexOf(":");
    if (text.indexOf(":") !== at) {
      throw new UsageError(`Bad address "${text}": write IPv6 as [addr]:port`);
    }
    host = text.slice(0, at);
    portText = text.slice(at + 1);
  }
  if (host === "") host = "0.0.0.0";
  if (!/^[A-Za-z0-9.\-:]+$/.test(host)) throw new UsageError(`Bad host in address "${text}"`);
  let port: number;
  if (portText === undefined || portText === "") {
    if (defaultPort === undefined) throw new UsageError(`Address "${text}" has no port`);
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) {
      throw new UsageError(`Bad port in address "${text}": use 0 to 65535`);
    }
  }
  return { hostname: host, port };
}

/** Formats an address for logs and URLs (`[::1]:80` for IPv6). */
export function formatHostPort(addr: HostPort): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/** `http://host:port` for an address (IPv6 in brackets). */
export function httpUrl(addr: HostPort): string {
  return `http://${formatHostPort(addr)}`;
}

/** True for a loopback host name or address. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Parsed, validated flag values of one command. */
export class Flags {
  #spec: Map<string, FlagSpec>;
  #values: Record<string, string | boolean | undefined>;
  #args: Map<string, string>;

  constructor(
    spec: CommandSpec,
    values: Record<string, string | boolean | undefined>,
    positionals: string[] = [],
  ) {
    this.#spec = new Map(spec.flags.map((f) => [f.name, f]));
    this.#values = values;
    this.#args = new Map(
      (spec.args ?? []).flatMap((a, i) => i < positionals.length ? [[a.name, positionals[i]]] : []),
    );
  }

  /** The positional argument declared as `name`, or undefined when optional and absent. */
  arg(name: string): string | undefined {
    return this.#args.get(name);
  }

  #raw(name: string): string | undefined {
    const spec = this.#spec.get(name);
    if (!spec) throw new Error(`Flag --${name} is not declared`);
    const v = this.#values[name];
    if (typeof v === "boolean") return v ? "true" : "false";
    return v ?? spec.default;
  }

  /** The flag's text, or undefined when optional and absent. */
  string(name: string): string | undefined {
    return this.#raw(name);
  }

  /** The flag as a path with `~` expanded. */
  path(name: string): string | undefined {
    const v = this.#raw(name);
    return v === undefined ? undefined : expandHome(v);
  }

  /** The flag as `host:port`. */
  address(name: string): HostPort {
    const v = this.#raw(name);
    if (v === undefined) throw new UsageError(`--${name} is required`);
    try {
      return parseHostPort(v);
    } catch (err) {
      throw new UsageError(`--${name}: ${(err as Error).message}`);
    }
  }

  /** The flag as `host:port`, or undefined when it is `off`. */
  addressOrOff(name: string): HostPort | undefined {
    return this.#raw(name) === "off" ? undefined : this.address(name);
  }

  /** The flag as a comma-separated list of `host[:port]`; a missing port is 0. */
  addresses(name: string): HostPort[] {
    const v = this.#raw(name) ?? "";
    const list = v.split(",").map((p) => p.trim()).filter((p) => p !== "");
    if (list.length === 0) throw new UsageError(`--${name} needs at least one host`);
    try {
      return list.map((p) => parseHostPort(p, 0));
    } catch (err) {
      throw new UsageError(`--${name}: ${(err as Error).message}`);
    }
  }

  /** The flag as a whole number. */
  integer(name: string): number {
    const v = this.#raw(name);
    if (v === undefined || !/^\d+$/.test(v)) {
      throw new UsageError(`--${name} must be a whole number, got "${v ?? ""}"`);
    }
    return Number(v);
  }

  /** The flag as a boolean. */
  boolean(name: string): boolean {
    return this.#raw(name) === "true";
  }
}

/** The command as typed with its positional arguments, e.g. `ztm join MESH`. */
export function usageLine(spec: CommandSpec): string {
  const args = (spec.args ?? []).map((a) => a.optional ? `[${a.name}]` : a.name);
  return [spec.name, ...args].join(" ");
}

/** The `--help` text of a command. */
export function usage(spec: CommandSpec): string {
  const lines = [`Usage: ${usageLine(spec)} [flags]`, "", spec.summary, ""];
  if (spec.args?.length) {
    const width = Math.max(...spec.args.map((a) => a.name.length));
    lines.push("Arguments:", ...spec.args.map((a) => `  ${a.name.padEnd(width)}  ${a.help}`), "");
  }
  lines.push("Flags:");
  const all: FlagSpec[] = [
    ...spec.flags.flatMap((f) => [
      f,
      ...(f.oldSpellings ?? []).map((old) => ({
        name: old,
        kind: f.kind,
        help: `old spelling of --${f.name}, still accepted`,
      })),
    ]),
    { name: "config", kind: "path", help: "read flags from a TOML or JSON file (flags here win)" },
    { name: "help", kind: "boolean", help: "show this help and exit" },
    { name: "version", kind: "boolean", help: "print the version and exit" },
  ];
  const left = all.map((f) =>
    f.kind === "boolean" ? `--${f.name}` : `--${f.name}=${f.kind.toUpperCase()}`
  );
  const width = Math.max(...left.map((l) => l.length));
  all.forEach((f, i) => {
    const def = f.default !== undefined ? ` (default: ${f.default})` : "";
    lines.push(`  ${left[i].padEnd(width)}  ${f.help}${def}`);
  });
  if (spec.examples?.length) lines.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`));
  return lines.join("\n");
}

/**
 * Parses `args` for `spec` into `Flags`, validating every value once.
 * Throws `UsageError`; never exits (see `parseCommandLine`).
 */
export function parseFlags(spec: CommandSpec, args: string[]): Flags | "help" | "version" {
  if (!args.includes("--help") && !args.includes("--version")) args = withConfig(spec, args);
  args = withNewSpellings(spec, args);
  const options: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
    version: { type: "boolean" },
  };
  for (const f of spec.flags) {
    options[f.name] = { type: f.kind === "boolean" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
    values = parsed.values as Record<string, string | boolean | undefined>;
    positionals = parsed.positionals;
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify.*$/s, ""));
  }
  if (values.help) return "help";
  if (values.version) return "version";
  const declared = spec.args ?? [];
  if (positionals.length > declared.length) {
    throw new UsageError(`Unexpected argument "${positionals[declared.length]}"`);
  }
  const missing = declared.slice(positionals.length).find((a) => !a.optional);
  if (missing) throw new UsageError(`${missing.name} is required`);
  const flags = new Flags(spec, values, positionals);
  for (const f of spec.flags) {
    const raw = flags.string(f.name);
    if (raw === undefined) {
      if (!f.optional && f.kind !== "boolean") throw new UsageError(`--${f.name} is required`);
      continue;
    }
    if (f.kind === "address") flags.address(f.name);
    if (f.kind === "address-or-off") flags.addressOrOff(f.name);
    if (f.kind === "addresses") flags.addresses(f.name);
    if (f.kind === "integer") flags.integer(f.name);
    if (f.kind === "path") flags.path(f.name);
    if (f.choices && !f.choices.includes(raw)) {
      throw new UsageError(`--${f.name} must be one of ${f.choices.join(", ")}, got "${raw}"`);
    }
  }
  return flags;
}

/** `args` with each old spelling of a flag (`FlagSpec.oldSpellings`) written as its name. */
function withNewSpellings(spec: CommandSpec, args: string[]): string[] {
  const names = new Map<string, string>();
  for (const f of spec.flags) for (const old of f.oldSpellings ?? []) names.set(old, f.name);
  if (names.size === 0) return args;
  const end = args.indexOf("--");
  return args.map((arg, i) => {
    if (end >= 0 && i > end) return arg;
    const m = /^--([^=]+)(=.*)?$/s.exec(arg);
    const name = m && names.get(m[1]);
    return name ? `--${name}${m[2] ?? ""}` : arg;
  });
}

/**
 * Parses the command line of a ztm command, printing help or the version and
 * exiting 0, or printing one error line plus the usage and exiting 2.
 */
export function parseCommandLine(spec: CommandSpec, args: string[]): Flags {
  try {
    const result = parseFlags(spec, args);
    if (result === "help") {
      console.log(usage(spec));
      Deno.exit(0);
    }
    if (result === "version") {
      console.log(`${spec.name} ${VERSION}`);
      Deno.exit(0);
    }
    return result;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // A config file's problems name their lines; the usage would bury them.
    const tail = err instanceof ConfigError ? "" : `\n\n${usage(spec)}`;
    console.error(`${spec.name}: ${err.message}${tail}`);
    Deno.exit(2);
  }
}
