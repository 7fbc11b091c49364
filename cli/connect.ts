/**
 * What every `ztm` client command shares: the flags that say which agent to
 * drive and how to show results, finding the API token, and the default mesh
 * and endpoint (the agent's only mesh, its own endpoint).
 */
import { cliError } from "./errors.ts";
import { AgentClient } from "@ztm/agent/client";
import type { MeshSummary } from "@ztm/shared/agent_api";
import { NotFound, safeJson, ZtmError } from "@ztm/shared/errors";
import {
  expandHome,
  type Flags,
  type FlagSpec,
  formatHostPort,
  httpUrl,
  UsageError,
} from "@ztm/shared/flags";

/** Environment variable that holds an API token (when no `--api-token-file` is given). */
export const TOKEN_ENV = "ZTM_API_TOKEN";

/** Token files tried in order when neither `--api-token-file` nor `ZTM_API_TOKEN` is given. */
export const DEFAULT_TOKEN_FILES = ["~/ztm.db.token", "~/.ztm/agent.db.token"];

/** Flags of every command that talks to an agent. */
export const AGENT_FLAGS: FlagSpec[] = [
  {
    name: "agent",
    kind: "address",
    default: "127.0.0.1:7777",
    help: "HOST:PORT of the agent's API",
  },
  {
    name: "api-token-file",
    kind: "path",
    optional: true,
    help: `the agent's API token file (default: $${TOKEN_ENV}, else ${
      DEFAULT_TOKEN_FILES.join(", else ")
    })`,
  },
  { name: "json", kind: "boolean", help: "print the API's JSON answer instead of text" },
];

/** `--mesh`, for commands that act in one mesh. */
export const MESH_FLAG: FlagSpec = {
  name: "mesh",
  kind: "string",
  optional: true,
  help: "the mesh (default: the agent's only mesh)",
};

/** `--endpoint`, for commands that act on one endpoint. */
export const ENDPOINT_FLAG: FlagSpec = {
  name: "endpoint",
  kind: "string",
  optional: true,
  help: "endpoint id or name (default: this agent's own endpoint)",
};

/** The API token: `--api-token-file`, else `$ZTM_API_TOKEN`, else the first default file that exists. */
export function findToken(flags: Flags): string {
  const file = flags.path("api-token-file");
  if (file !== undefined) {
    try {
      return readToken(file);
    } catch (err) {
      if (!(err instanceof NotFound)) throw err;
      throw cliError("no_token", `The --api-token-file "${file}" does not exist`);
    }
  }
  const env = Deno.env.get(TOKEN_ENV)?.trim();
  if (env) return env;
  for (const name of DEFAULT_TOKEN_FILES) {
    const path = expandHome(name);
    try {
      return readToken(path);
    } catch (err) {
      if (!(err instanceof NotFound)) throw err;
    }
  }
  throw cliError(
    "no_token",
    `No API token: none of ${
      DEFAULT_TOKEN_FILES.join(", ")
    } exists; give --api-token-file (the agent's <database>.token) or set ${TOKEN_ENV}`,
  );
}

function readToken(path: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw cliError("no_token", `API token file "${path}" does not exist`);
    }
    throw new Error(
      `Cannot read the API token file "${path}" (--api-token-file): ${(err as Error).message}`,
    );
  }
  if (!text.trim()) throw new Error(`API token file "${path}" is empty`);
  return text.trim();
}

/** Where the token came from, for messages: a file, or the environment variable. */
function tokenSource(flags: Flags): string {
  const file = flags.path("api-token-file");
  if (file !== undefined) return file;
  if (Deno.env.get(TOKEN_ENV)?.trim()) return `$${TOKEN_ENV}`;
  return DEFAULT_TOKEN_FILES.find((f) => {
    try {
      return Deno.statSync(expandHome(f)).isFile;
    } catch {
      return false;
    }
  }) ?? DEFAULT_TOKEN_FILES[0];
}

/** A client of the agent the flags name; `timeoutMs` for requests that wait (a join). */
export function connect(flags: Flags, timeoutMs?: number): AgentClient {
  return new AgentClient({
    url: httpUrl(flags.address("agent")),
    token: findToken(flags),
    timeoutMs,
  });
}

/**
 * The message for an error of a command that talks to an agent, in plain
 * words for the two a new user meets first: no agent there, and the wrong
 * token (the agent names its token file in its 401). Other errors keep theirs.
 */
export function explainAgentError(err: unknown, flags: Flags): string | undefined {
  if (!(err instanceof ZtmError)) return undefined;
  const agent = formatHostPort(flags.address("agent"));
  if (err.code === "agent_unreachable") {
    return `no agent answers on ${agent} (start one with \`ztm agent\`, or name another with --agent)`;
  }
  if (err.status === 401 && err.code === "token_required") {
    const file = /this agent's token is in (.+)$/.exec(err.message)?.[1];
    const where = file
      ? `this agent's token is in ${file}; pass --api-token-file=${file}`
      : "pass --api-token-file with the agent's <database>.token";
    return `the agent on ${agent} refused the API token from ${
      tokenSource(flags)
    }: ${where} or run as the agent's user`;
  }
  return undefined;
}

/**
 * The mesh a command acts in: `--mesh`, or the agent's only mesh. Throws
 * `UsageError` when the agent has joined several and none was named.
 */
export async function chooseMesh(client: AgentClient, flags: Flags): Promise<MeshSummary> {
  const named = flags.string("mesh");
  if (named !== undefined) return await client.mesh(named);
  const meshes = await client.meshes();
  if (meshes.length === 1) return meshes[0];
  if (meshes.length === 0) {
    throw cliError("no_mesh", "This agent has joined no mesh yet; see ztm join --help");
  }
  throw new UsageError(
    `--mesh is required: this agent has joined ${meshes.map((m) => m.name).join(", ")}`,
  );
}

/** The mesh and endpoint a command acts on: `--endpoint`, or this agent's own endpoint. */
export async function chooseEndpoint(
  client: AgentClient,
  flags: Flags,
): Promise<{ mesh: MeshSummary; endpoint: string }> {
  const mesh = await chooseMesh(client, flags);
  return { mesh, endpoint: flags.string("endpoint") ?? mesh.endpoint.id };
}

/** Prints `value` as one JSON document (what `--json` shows). */
export function printJson(value: unknown): void {
  // JSON escapes C0 controls itself; DEL, C1 and bidi controls get `\u` escapes too (same value).
  console.log(safeJson(JSON.stringify(value, null, 2)));
}
