/**
 * `deno task compile`: builds a self-contained `ztm` executable per OS and
 * architecture with `deno compile --target`. Deno fetches the runtime for
 * each target (`denort`) from its servers, so this runs on release machines
 * with that access, never in CI; `--dry-run` prints the commands instead.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CommandSpec, parseCommandLine } from "@ztm/shared/flags";

/** The targets `deno compile` supports. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

/** Flags of `deno task compile`. */
export const COMPILE_COMMAND: CommandSpec = {
  name: "deno task compile",
  summary: "Builds self-contained ztm executables (dist/ztm-TARGET) with deno compile.",
  flags: [
    { name: "targets", kind: "string", default: TARGETS.join(","), help: "targets to build" },
    { name: "out-dir", kind: "path", default: "dist", help: "where the executables go" },
    { name: "dry-run", kind: "boolean", help: "print the deno compile commands, run nothing" },
  ],
  examples: ["deno task compile --targets=x86_64-unknown-linux-gnu"],
};

/** The `deno compile` arguments for one target. */
export function compileArgs(target: string, outDir: string): string[] {
  return [
    "compile",
    "--allow-all",
    "--v8-flags=--max-semi-space-size=2",
    `--target=${target}`,
    `--output=${join(outDir, `ztm-${target}`)}`,
    fileURLToPath(import.meta.resolve("./main.ts")),
  ];
}

if (import.meta.main) {
  const flags = parseCommandLine(COMPILE_COMMAND, Deno.args);
  const outDir = flags.path("out-dir")!;
  for (const target of flags.string("targets")!.split(",").filter((t) => t)) {
    const args = compileArgs(target, outDir);
    console.log(["deno", ...args].join(" "));
    if (flags.boolean("dry-run")) continue;
    const status = await new Deno.Command(Deno.execPath(), { args }).spawn().status;
    if (!status.success) Deno.exit(status.code);
  }
}
