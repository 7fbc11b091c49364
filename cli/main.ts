/**
 * `ztm`: one command for everything. `ztm ca|hub|agent|start` run the
 * components; the other commands drive a running agent's API through the
 * typed client (`@ztm/agent/client`), or the CA's API for certificates.
 *
 * Exit status: 0 done, 1 the operation was refused or failed (the API's
 * message on stderr), 2 a usage error (one line and the usage on stderr).
 *
 * @example
 * ```sh
 * deno run -A cli/main.ts get endpoints --mesh=work
 * deno task ztm create port 2222 --service=tcp/ssh
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type CommandSpec,
  parseCommandLine,
  usage,
  UsageError,
  usageLine,
} from "@ztm/shared/flags";
import { safeText } from "@ztm/shared/errors";
import { VERSION } from "@ztm/shared/version";
import { CERT_LIST, CERT_NEW, CERT_REVOKE, CERT_STATUS } from "./cert_commands.ts";
import { CONFIG_CHECK } from "./config_command.ts";
import { CREATE_PORT, CREATE_SERVICE, DELETE_PORT, DELETE_SERVICE } from "./change_commands.ts";
import type { Command } from "./command.ts";
import { COMPONENTS } from "./components.ts";
import { explainAgentError } from "./connect.ts";
import { GET, LOG } from "./get_command.ts";
import { INVITE, INVITES_LIST, INVITES_REVOKE } from "./invite_commands.ts";
import { DASHBOARD, JOIN, LEAVE, SET_HUBS, STATUS } from "./mesh_commands.ts";
import { PROXY_OFF, PROXY_ON, PROXY_STATUS } from "./proxy_commands.ts";
import { SERVICE_INSTALL } from "./service_commands.ts";

/** Commands of one word, and commands with a second word (`create service`). */
const COMMANDS: Record<string, Command | Record<string, Command>> = {
  join: JOIN,
  leave: LEAVE,
  mesh: { "set-hubs": SET_HUBS },
  get: GET,
  create: { service: CREATE_SERVICE, port: CREATE_PORT },
  delete: { service: DELETE_SERVICE, port: DELETE_PORT },
  status: STATUS,
  dashboard: DASHBOARD,
  log: LOG,
  cert: { new: CERT_NEW, revoke: CERT_REVOKE, list: CERT_LIST, status: CERT_STATUS },
  invite: INVITE,
  invites: { list: INVITES_LIST, revoke: INVITES_REVOKE },
  proxy: { on: PROXY_ON, off: PROXY_OFF, status: PROXY_STATUS },
  service: { install: SERVICE_INSTALL },
  config: { check: CONFIG_CHECK },
};

/** `ztm --help`. */
export function overview(): string {
  const rows: [string, string][] = [
    ...Object.entries(COMPONENTS).map(([name, c]): [string, string] => [name, c.summary]),
    ["", ""],
  ];
  for (const entry of Object.values(COMMANDS)) {
    const commands = isCommand(entry) ? [entry] : Object.values(entry);
    for (const c of commands) {
      rows.push([usageLine(c.spec).replace(/^ztm /, ""), c.spec.summary]);
    }
  }
  const width = Math.max(...rows.map(([l]) => l.length));
  return [
    "Usage: ztm COMMAND [ARGUMENTS] [flags]",
    "",
    "Runs the parts of a ztm mesh and drives an agent's API (--agent, default 127.0.0.1:7777).",
    "",
    "Commands:",
    ...rows.map(([l, s]) => l ? `  ${l.padEnd(width)}  ${s}` : ""),
    "",
    "ztm COMMAND --help shows a command's flags and an example.",
    "Exit status: 0 done, 1 refused or failed, 2 usage error.",
  ].join("\n");
}

function isCommand(entry: Command | Record<string, Command>): entry is Command {
  return "spec" in entry && "run" in entry;
}

function usageError(message: string, text: string): never {
  console.error(`ztm: ${message}\n\n${text}`);
  Deno.exit(2);
}

/**
 * `deno task ztm` runs in the project's directory (Deno's rule for tasks) and
 * names the caller's directory in `INIT_CWD`: go back there, so that file
 * names on the command line (`--ca=ca.crt`, `--dir=.`) mean what they say.
 */
function enterCallerDirectory(): void {
  const caller = Deno.env.get("INIT_CWD");
  if (!caller || !import.meta.url.startsWith("file:")) return;
  const root = fileURLToPath(new URL("..", import.meta.url));
  if (resolve(Deno.cwd()) === resolve(root)) Deno.chdir(caller);
}

/** Runs `ztm` with `args`; exits with 0, 1 or 2. */
export async function main(args: string[]): Promise<void> {
  enterCallerDirectory();
  const [word, ...rest] = args;
  if (word === undefined) usageError("a command is required", overview());
  if (word === "--help" || word === "-h" || word === "help") {
    console.log(overview());
    Deno.exit(0);
  }
  if (word === "--version") {
    console.log(`ztm ${VERSION}`);
    Deno.exit(0);
  }
  const component = COMPONENTS[word];
  if (component) return await (await component.main())(rest);
  const entry = COMMANDS[word];
  if (!entry) usageError(`unknown command "${word}"`, overview());
  let command: Command;
  let commandArgs = rest;
  if (isCommand(entry)) {
    command = entry;
  } else {
    const [second, ...more] = rest;
    const kinds = Object.keys(entry);
    const list = Object.values(entry).map((c) => `Usage: ${usageLine(c.spec)} [flags]`).join("\n");
    if (second === "--help" || second === "-h") {
      console.log(`Usage: ztm ${word} ${kinds.join("|")} …\n\n${list}`);
      Deno.exit(0);
    }
    if (second === undefined || !entry[second]) {
      usageError(
        second === undefined
          ? `${word} needs one of: ${kinds.join(", ")}`
          : `unknown ${word} "${second}"; use one of: ${kinds.join(", ")}`,
        list,
      );
    }
    command = entry[second];
    commandArgs = more;
  }
  await runCommand(command, commandArgs);
}

async function runCommand(command: Command, args: string[]): Promise<void> {
  const spec: CommandSpec = command.spec;
  const flags = parseCommandLine(spec, args);
  try {
    await command.run(flags);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${spec.name}: ${err.message}\n\n${usage(spec)}`);
      Deno.exit(2);
    }
    // A ZtmError carries the API's message; other errors (a file that cannot be read) their own.
    const plain = spec.flags.some((f) => f.name === "agent")
      ? explainAgentError(err, flags)
      : undefined;
    // Line by line: a message may list several problems, one a line (`ztm config check`).
    const message = plain ?? (err instanceof Error ? err.message : String(err));
    console.error(`${spec.name}: ${message.split("\n").map(safeText).join("\n")}`);
    Deno.exit(1);
  }
  Deno.exit(0);
}

if (import.meta.main) await main(Deno.args);
