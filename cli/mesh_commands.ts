/**
 * `ztm join`, `ztm leave`, `ztm status` and `ztm dashboard`: an agent's
 * meshes and how they are doing.
 */
import type { AgentClient, MeshSummary } from "@ztm/agent/client";
import { ZtmError } from "@ztm/shared/errors";
import { type Flags, formatHostPort } from "@ztm/shared/flags";
import type { Command } from "./command.ts";
import { AGENT_FLAGS, connect, printJson } from "./connect.ts";
import { linkState } from "./get_command.ts";
import { formatTable } from "./table.ts";

/** The port of a `--hub` address that gives none: the hub's default. */
const DEFAULT_HUB_PORT = 8888;
/** Certificates this close to expiry are flagged by `ztm status`. */
const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

/** `ztm join`. */
export const JOIN: Command = {
  spec: {
    name: "ztm join",
    summary:
      "Joins the agent to a mesh with a user's certificate, key and the mesh CA certificate.",
    args: [{ name: "MESH", help: "name of the mesh on this agent" }],
    flags: [
      {
        name: "hub",
        kind: "addresses",
        help:
          `HOST:PORT[,…] of the mesh's hubs, tried in order (port default: ${DEFAULT_HUB_PORT})`,
      },
      { name: "ca", kind: "path", help: "the mesh CA certificate (PEM file)" },
      { name: "cert", kind: "path", help: "the user's certificate (PEM file)" },
      { name: "key", kind: "path", help: "the user's private key (PEM file)" },
      {
        name: "name",
        kind: "string",
        optional: true,
        help: "this endpoint's name in the mesh (default: the agent's --name or host name)",
      },
      ...AGENT_FLAGS,
    ],
    examples: [
      "ztm join work --hub=hub.example.com:8888 --ca=ca.crt --cert=bob.crt --key=bob.key --name=office",
    ],
  },
  async run(flags) {
    const mesh = flags.arg("MESH")!;
    const name = flags.string("name");
    const body = {
      ca: readPem(flags, "ca"),
      agent: {
        ...(name === undefined ? {} : { name }),
        certificate: readPem(flags, "cert"),
        privateKey: readPem(flags, "key"),
      },
      bootstraps: flags.addresses("hub").map((a) =>
        formatHostPort({ hostname: a.hostname, port: a.port || DEFAULT_HUB_PORT })
      ),
    };
    const joined = await connect(flags).join(mesh, body);
    if (flags.boolean("json")) return printJson(joined);
    console.log(
      `Joined mesh "${joined.name}" as user ${joined.user}: endpoint ${joined.endpoint.name} (id ${joined.endpoint.id}), hubs ${
        joined.bootstraps.join(", ")
      }`,
    );
  },
};

function readPem(flags: Flags, flag: string): string {
  const path = flags.path(flag)!;
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw new Error(`Cannot read the --${flag} file "${path}": ${(err as Error).message}`);
  }
}

/** `ztm leave`. */
export const LEAVE: Command = {
  spec: {
    name: "ztm leave",
    summary: "Leaves a mesh: the agent disconnects, closes the mesh's ports and forgets its state.",
    args: [{ name: "MESH", help: "the mesh to leave" }],
    flags: AGENT_FLAGS,
    examples: ["ztm leave work"],
  },
  async run(flags) {
    const left = await connect(flags).leave(flags.arg("MESH")!);
    if (flags.boolean("json")) return printJson(left);
    console.log(`Left mesh "${left.name}" (endpoint ${left.endpoint.name})`);
  },
};

/** `ztm status`. */
export const STATUS: Command = {
  spec: {
    name: "ztm status",
    summary:
      "Shows every mesh of the agent: hub link state, the hub, endpoints the hub knows, certificate expiry.",
    flags: AGENT_FLAGS,
    examples: ["ztm status", "ztm status --agent=127.0.0.1:7000 --json"],
  },
  async run(flags) {
    const client = connect(flags);
    const meshes = await client.meshes();
    if (flags.boolean("json")) return printJson(meshes);
    const counts = await Promise.all(meshes.map((m) => endpointCount(client, m)));
    const now = Date.now();
    const lines = [
      `agent ${client.url}: ${meshes.length} mesh${meshes.length === 1 ? "" : "es"}`,
      formatTable(
        ["MESH", "USER", "ENDPOINT", "LINK", "HUB", "SINCE", "ENDPOINTS", "CERTIFICATE"],
        meshes.map((m, i) => [
          m.name,
          m.user,
          m.endpoint.name,
          linkState(m),
          m.status?.hub ?? "-",
          m.status?.since ?? "-",
          counts[i],
          expiry(m.certificate.notAfter, now),
        ]),
        "No meshes joined; see ztm join --help.",
      ),
    ];
    for (const m of meshes) {
      if (m.status?.lastError) lines.push(`${m.name}: last hub error: ${m.status.lastError}`);
      if (m.status?.crlAlarm) lines.push(`${m.name}: REVOCATION ALARM: ${m.status.crlAlarm}`);
    }
    console.log(lines.join("\n"));
  },
};

/** How many endpoints the mesh's hub knows, or "-" while the agent cannot ask it. */
async function endpointCount(client: AgentClient, mesh: MeshSummary): Promise<string> {
  if (!mesh.status?.connected) return "-";
  try {
    return String((await client.endpoints(mesh.name, { limit: 1 })).total);
  } catch (err) {
    if (err instanceof ZtmError) return "-";
    throw err;
  }
}

/** `expires 2027-11-25 (in 365 days)`, flagged when close or past. */
export function expiry(notAfter: string, now: number): string {
  const days = Math.floor((Date.parse(notAfter) - now) / DAY_MS);
  const date = notAfter.slice(0, 10);
  if (days < 0) return `EXPIRED ${date}`;
  const text = `expires ${date} (in ${days} day${days === 1 ? "" : "s"})`;
  return days < EXPIRY_WARNING_DAYS ? `${text} RENEW SOON` : text;
}

/** `ztm dashboard`. */
export const DASHBOARD: Command = {
  spec: {
    name: "ztm dashboard",
    summary: "Prints a fresh one-time login URL for the agent's web dashboard (valid 10 minutes).",
    flags: AGENT_FLAGS,
    examples: ["ztm dashboard"],
  },
  async run(flags) {
    const url = await connect(flags).loginUrl();
    if (flags.boolean("json")) return printJson({ url });
    console.log(url);
  },
};
