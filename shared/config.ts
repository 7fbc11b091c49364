/**
 * Config files for every ztm command: `--config=FILE` reads flags from a TOML
 * (`.toml`) or JSON file, and the command line overrides them.
 *
 * A file's top-level keys are the flags of the command it is given to; a table
 * named after a component (`[hub]`, `[agent]`, `[ca]`, `[start]`) holds that
 * component's flags and overrides the top level, so one file can serve every
 * component of a machine. Keys are flag names (`max-sessions`, or
 * `max_sessions`); values are strings, whole numbers, booleans or arrays of
 * strings (joined with commas, as `--names=a,b` takes them). A relative path
 * means the file's own directory. Every problem names the file and line.
 *
 * @example
 * ```toml
 * # /etc/ztm/hub.toml          ztm hub --config=/etc/ztm/hub.toml --listen=0.0.0.0:9000
 * ca = "127.0.0.1:9999"
 * names = ["hub.example.com", "203.0.113.7"]
 * max-sessions = 5000
 * ```
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { parse, TomlError } from "smol-toml";
import { type CommandSpec, type FlagSpec, parseHostPort } from "./flags.ts";
import { UsageError } from "./usage_error.ts";

/** The component tables a config file may hold. */
export const CONFIG_SECTIONS = ["ca", "hub", "agent", "start"] as const;

/** One problem in a config file, at a 1-based line (0 when the whole file is at fault). */
export interface ConfigProblem {
  line: number;
  message: string;
}

/** A parsed config file: its tables and where each key stands. */
export interface ConfigFile {
  path: string;
  values: Record<string, unknown>;
  /** `section.key` (or `key` at the top) → line. */
  lines: Map<string, number>;
}

/** Thrown for a config file that cannot be used; its message is `FILE:LINE: what`. */
export class ConfigError extends UsageError {
  constructor(readonly path: string, readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${path}${p.line ? `:${p.line}` : ""}: ${p.message}`).join("\n"));
  }
}

/** Reads and parses `path` (TOML or, by its `.json` ending, JSON). Throws `ConfigError`. */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw new ConfigError(path, [{ line: 0, message: `cannot read --config: ${errText(err)}` }]);
  }
  let values: unknown;
  if (path.endsWith(".json")) {
    try {
      values = JSON.parse(text);
    } catch (err) {
      const at = /position (\d+)/.exec(errText(err));
      const line = at ? text.slice(0, Number(at[1])).split("\n").length : 0;
      throw new ConfigError(path, [{ line, message: `not valid JSON: ${errText(err)}` }]);
    }
  } else {
    try {
      values = parse(text);
    } catch (err) {
      const line = err instanceof TomlError ? err.line : 0;
      const message = errText(err).split("\n")[0].replace(/^Invalid TOML document: /, "");
      throw new ConfigError(path, [{ line, message: `not valid TOML: ${message}` }]);
    }
  }
  if (typeof values !== "object" || values === null || Array.isArray(values)) {
    throw new ConfigError(path, [{ line: 1, message: "the file must hold a table of flags" }]);
  }
  return { path, values: values as Record<string, unknown>, lines: keyLines(text, path) };
}

/** Where each key is written: `key = …` under its `[section]` (TOML), or `"key": …` (JSON). */
function keyLines(text: string, path: string): Map<string, number> {
  if (path.endsWith(".json")) return jsonKeyLines(text);
  const lines = new Map<string, number>();
  let section = "";
  const arrays = new Map<string, number>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    // `[a.b]` is table a.b; the n-th `[[a.b]]` is a.b.n (from 0).
    const table = /^(\[\[?)\s*([A-Za-z0-9_.\-" ]+?)\s*\]\]?/.exec(line);
    if (table) {
      section = table[2].replaceAll('"', "").split(".").map((p) => p.trim()).join(".");
      if (table[1] === "[[") {
        const n = arrays.get(section) ?? 0;
        arrays.set(section, n + 1);
        lines.set(section, lines.get(section) ?? i + 1);
        section = `${section}.${n}`;
      }
      lines.set(section, i + 1);
      return;
    }
    const key = /^"?([A-Za-z0-9_-]+)"?\s*=/.exec(line);
    const name = key && (section ? `${section}.${key[1]}` : key[1]);
    if (name && !lines.has(name)) lines.set(name, i + 1);
  });
  return lines;
}

/** Key lines of a JSON file, tracking object depth character by character outside strings. */
function jsonKeyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let depth = 0;
  let line = 1;
  let section = "";
  let lastKey = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    else if (c === "{") {
      depth++;
      if (depth === 2) section = lastKey;
    } else if (c === "}") {
      depth--;
      if (depth === 1) section = "";
    } else if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0) break;
      const word = text.slice(i + 1, end);
      const after = text.slice(end + 1).trimStart();
      if (after.startsWith(":")) {
        lastKey = word;
        const name = depth === 2 && section ? `${section}.${word}` : word;
        if (depth <= 2 && !lines.has(name)) lines.set(name, line);
      }
      line += word.split("\n").length - 1;
      i = end;
    }
  }
  return lines;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The component a spec belongs to: `ztm hub` → `hub`. */
export function sectionOf(spec: CommandSpec): string {
  return spec.name.replace(/^ztm\s+/, "");
}

/**
 * Checks one table of `file` against `spec` and returns the flags it sets as
 * `--name=value` words, with the problems found (unknown keys, values of the
 * wrong kind, bad addresses), each with its line.
 */
export function tableArgs(
  file: ConfigFile,
  table: Record<string, unknown>,
  spec: CommandSpec,
  section: string,
): { args: string[]; problems: ConfigProblem[] } {
  const flags = new Map<string, FlagSpec>(
    spec.flags.flatMap((f) => [f.name, ...(f.oldSpellings ?? [])].map((n) => [n, f])),
  );
  const args: string[] = [];
  const problems: ConfigProblem[] = [];
  for (const [rawKey, value] of Object.entries(table)) {
    const isTable = typeof value === "object" && value !== null && !Array.isArray(value);
    if (section === "" && isTable && (CONFIG_SECTIONS as readonly string[]).includes(rawKey)) {
      continue; // a component's table, read by that component
    }
    if (section !== "" && spec.configTables?.includes(rawKey)) continue; // read by the command
    const line = file.lines.get(section ? `${section}.${rawKey}` : rawKey) ?? 0;
    const name = rawKey.replaceAll("_", "-");
    const flag = flags.get(name);
    if (!flag) {
      const known = spec.flags.map((f) => f.name).join(", ");
      problems.push({ line, message: `${spec.name} has no flag "${rawKey}" (it has: ${known})` });
      continue;
    }
    const text = flagText(flag, value, file.path);
    if (typeof text === "object") {
      problems.push({ line, message: `${rawKey}: ${text.error}` });
      continue;
    }
    if (text !== undefined) args.push(`--${flag.name}=${text}`);
  }
  return { args, problems };
}

/** A value as the flag's text, `undefined` for a false boolean, or what is wrong with it. */
function flagText(
  flag: FlagSpec,
  value: unknown,
  path: string,
): string | undefined | { error: string } {
  if (flag.kind === "boolean") {
    if (typeof value !== "boolean") return { error: "must be true or false" };
    return value ? "true" : undefined;
  }
  let text: string;
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) text = value.join(",");
  else if (typeof value === "string") text = value;
  else if (typeof value === "number" && Number.isInteger(value) && value >= 0) text = String(value);
  else return { error: `must be ${flag.kind === "integer" ? "a whole number" : "a string"}` };
  try {
    if (flag.kind === "integer" && !/^\d+$/.test(text)) return { error: "must be a whole number" };
    if (flag.kind === "address") parseHostPort(text);
    if (flag.kind === "address-or-off" && text !== "off") parseHostPort(text);
    if (flag.kind === "addresses") text.split(",").forEach((p) => parseHostPort(p.trim(), 0));
  } catch (err) {
    return { error: errText(err) };
  }
  if (flag.kind === "path" && !isAbsolute(text) && !text.startsWith("~")) {
    text = resolve(dirname(resolve(path)), text);
  }
  return text;
}

/**
 * The flags `file` gives `spec`: its top-level keys, then its table named
 * after the component. Throws `ConfigError` listing every problem.
 */
export function configArgs(file: ConfigFile, spec: CommandSpec): string[] {
  const section = sectionOf(spec);
  const top = tableArgs(file, file.values, spec, "");
  const own = file.values[section];
  const table = own === undefined
    ? { args: [], problems: [] }
    : typeof own === "object" && own !== null && !Array.isArray(own)
    ? tableArgs(file, own as Record<string, unknown>, spec, section)
    : {
      args: [],
      problems: [{ line: file.lines.get(section) ?? 0, message: `${section} must be a table` }],
    };
  const problems = [...top.problems, ...table.problems];
  if (problems.length) throw new ConfigError(file.path, problems);
  return [...top.args, ...table.args];
}

/** The file named by `--config=FILE` or `--config FILE` in `args`, `~` expanded. */
export function configPath(args: string[]): string | undefined {
  const at = args.findIndex((a) => a === "--config" || a.startsWith("--config="));
  if (at < 0) return undefined;
  const path = args[at].startsWith("--config=") ? args[at].slice("--config=".length) : args[at + 1];
  if (!path) return undefined;
  return path === "~" || path.startsWith("~/")
    ? (Deno.env.get("HOME") ?? "") + path.slice(1)
    : path;
}

/**
 * Takes `--config=FILE` (or `--config FILE`) out of `args` and puts the
 * file's flags in front of the rest, so the command line overrides the file.
 * Throws `ConfigError` or `UsageError`.
 */
export function withConfig(spec: CommandSpec, args: string[]): string[] {
  const at = args.findIndex((a) => a === "--config" || a.startsWith("--config="));
  if (at < 0) return args;
  const inline = args[at].startsWith("--config=");
  const path = inline ? args[at].slice("--config=".length) : args[at + 1];
  if (!path) throw new UsageError("--config needs a file");
  const rest = [...args.slice(0, at), ...args.slice(at + (inline ? 1 : 2))];
  if (rest.some((a) => a === "--config" || a.startsWith("--config="))) {
    throw new UsageError("--config may be given once");
  }
  return [...configArgs(readConfigFile(configPath(args)!), spec), ...rest];
}
