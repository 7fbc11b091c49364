/**
 * `ztm config check FILE`: checks a config file (`--config`, see
 * `shared/config.ts`) against every component's flags before it is used, and
 * lists each problem with its line.
 */
import {
  CONFIG_SECTIONS,
  ConfigError,
  type ConfigProblem,
  readConfigFile,
  tableArgs,
} from "@ztm/shared/config";
import { type CommandSpec, type Flags, UsageError } from "@ztm/shared/flags";
import type { Command } from "./command.ts";

/** Each component's command spec, loaded when a check needs it. */
async function specs(): Promise<Record<string, CommandSpec>> {
  return {
    ca: (await import("@ztm/ca/main")).CA_COMMAND,
    hub: (await import("@ztm/hub/main")).HUB_COMMAND,
    agent: (await import("@ztm/agent/main")).AGENT_COMMAND,
    start: (await import("./start.ts")).START_COMMAND,
  };
}

/** `ztm config check`. */
export const CONFIG_CHECK: Command = {
  spec: {
    name: "ztm config check",
    summary: "Checks a TOML or JSON config file against the components' flags, naming each line.",
    args: [{ name: "FILE", help: "the file given to --config" }],
    flags: [
      {
        name: "for",
        kind: "string",
        optional: true,
        help: "the component its top-level keys are for (ca, hub, agent, start)",
      },
    ],
    examples: ["ztm config check /etc/ztm/hub.toml --for=hub"],
  },
  async run(flags: Flags): Promise<void> {
    const path = flags.arg("FILE")!;
    const only = flags.string("for");
    const all = await specs();
    if (only !== undefined && !all[only]) {
      throw new UsageError(`--for must be one of ${CONFIG_SECTIONS.join(", ")}, got "${only}"`);
    }
    let file;
    try {
      file = readConfigFile(path);
    } catch (err) {
      // A file that cannot be read or parsed is the answer (exit 1), not a usage error.
      throw err instanceof ConfigError ? new Error(err.message) : err;
    }
    const problems: ConfigProblem[] = [];
    const counts: string[] = [];
    // Top-level keys: checked against --for, or else against whichever component has the flag.
    const top = Object.fromEntries(
      Object.entries(file.values).filter(([k, v]) =>
        !((CONFIG_SECTIONS as readonly string[]).includes(k) && typeof v === "object" &&
          v !== null && !Array.isArray(v))
      ),
    );
    if (only !== undefined) {
      const checked = tableArgs(file, top, all[only], "");
      problems.push(...checked.problems);
      if (checked.args.length) counts.push(`${checked.args.length} top-level for ${only}`);
    } else {
      for (const key of Object.keys(top)) {
        const results = Object.values(all).map((spec) =>
          tableArgs(file, { [key]: top[key] }, spec, "")
        );
        if (results.some((r) => r.problems.length === 0)) continue;
        const unknown = results.every((r) => r.problems[0].message.includes("has no flag"));
        problems.push(
          unknown
            ? { line: file.lines.get(key) ?? 0, message: `no component has a flag "${key}"` }
            : results.find((r) => !r.problems[0].message.includes("has no flag"))!.problems[0],
        );
      }
      if (Object.keys(top).length) counts.push(`${Object.keys(top).length} top-level`);
    }
    for (const section of CONFIG_SECTIONS) {
      const table = file.values[section];
      if (typeof table !== "object" || table === null || Array.isArray(table)) continue;
      const checked = tableArgs(file, table as Record<string, unknown>, all[section], section);
      problems.push(...checked.problems);
      counts.push(`${checked.args.length} for ${section}`);
    }
    // The agent's declared meshes, services and port mappings.
    const declared = (await import("@ztm/agent/declared")).readDeclarations(file);
    problems.push(...declared.problems);
    if (declared.meshes.length) counts.push(`${declared.meshes.length} declared mesh(es)`);
    if (problems.length) {
      throw new Error(new ConfigError(path, problems.sort((a, b) => a.line - b.line)).message);
    }
    console.log(`${path}: valid (${counts.join(", ") || "no flags"})`);
  },
};
