/**
 * `ztm join`, `ztm leave`, `ztm status` and `ztm dashboard`: an agent's
 * meshes and how they are doing.
 */
import type { AgentClient } from "@ztm/agent/client";
import { type InviteJoinBody, MAX_JOIN_WAIT_S, type MeshSummary } from "@ztm/shared/agent_api";
import { safeText, ZtmError } from "@ztm/shared/errors";
import {
  type Flags,
  type FlagSpec,
  formatHostPort,
  parseHostPort,
  UsageError,
} from "@ztm/shared/flags";
import type { Command } from "./command.ts";
import { AGENT_FLAGS, connect, printJson } from "./connect.ts";
import { linkState } from "./get_command.ts";
import { formatTable } from "./table.ts";

/** The port of a `--hub` address that gives none: the hub's default. */
const DEFAULT_HUB_PORT = 8888;
/** A join that takes longer than this says what it waits for. */
const PROGRESS_AFTER_MS = 500;
/** Certificates this close to expiry are flagged by `ztm status`. */
const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

/** `--hub`: the mesh's hub addresses. */
const HUB_FLAG: FlagSpec = {
  name: "hub",
  kind: "string",
  help:
    `HOST:PORT[,…] of the mesh's hubs; the agent holds a session with each (port default: ${DEFAULT_HUB_PORT})`,
};

/** `--timeout` and `--no-wait`: whether and how long to wait for the first hub session. */
const WAIT_FLAGS: FlagSpec[] = [
  {
    name: "timeout",
    kind: "integer",
    default: "30",
    help: "seconds to wait for the hub; a hub not reached by then undoes the change",
  },
  {
    name: "no-wait",
    kind: "boolean",
    help: "do not wait for the hub (its errors then show in ztm status)",
  },
];

/** `ztm join`. */
export const JOIN: Command = {
  spec: {
    name: "ztm join",
    summary:
      "Joins the agent to a mesh with an invite (the key is made here), or with a user's certificate, key and the mesh CA certificate.",
    args: [{ name: "MESH", help: "name of the mesh on this agent" }],
    flags: [
      {
        name: "invite",
        kind: "string",
        optional: true,
        help:
          "an invite from ztm invite (the string, or @FILE): the agent makes its key, gets its certificate through the hub, and joins",
      },
      { ...HUB_FLAG, optional: true, help: HUB_FLAG.help + " (with --invite: the invite's)" },
      { name: "ca", kind: "path", optional: true, help: "the mesh CA certificate (PEM file)" },
      { name: "cert", kind: "path", optional: true, help: "the user's certificate (PEM file)" },
      { name: "key", kind: "path", optional: true, help: "the user's private key (PEM file)" },
      {
        name: "name",
        kind: "string",
        optional: true,
        help: "this endpoint's name in the mesh (default: the agent's --name or host name)",
      },
      ...WAIT_FLAGS,
      ...AGENT_FLAGS,
    ],
    examples: [
      "ztm join work --invite=ztm-invite-1.eyJ1Ijoi… --name=laptop",
      "ztm join work --hub=hub.example.com:8888 --ca=ca.crt --cert=bob.crt --key=bob.key --name=office",
      "ztm join work --hub=hub.example.com --ca=ca.crt --cert=bob.crt --key=bob.key --no-wait",
    ],
  },
  async run(flags) {
    const mesh = flags.arg("MESH")!;
    const name = flags.string("name");
    const inviteFlag = flags.string("invite");
    if (inviteFlag !== undefined) return await joinWithInvite(flags, mesh, name, inviteFlag);
    for (const flag of ["hub", "ca", "cert", "key"]) {
      if (flags.string(flag) === undefined) {
        throw new UsageError(`--${flag} is required (or join with --invite)`);
      }
    }
    const body = {
      ca: readPem(flags, "ca"),
      agent: {
        ...(name === undefined ? {} : { name }),
        certificate: readPem(flags, "cert"),
        privateKey: readPem(flags, "key"),
      },
      bootstraps: hubAddresses(flags),
    };
    const wait = waitFor(flags);
    const client = connect(flags, (wait + 30) * 1000);
    const joined = await withProgress(
      flags,
      wait,
      `Joining mesh "${mesh}"`,
      body.bootstraps,
      () => client.join(mesh, body, { wait }),
    );
    if (flags.boolean("json")) return printJson(joined);
    console.log(
      `Joined mesh "${joined.name}" as user ${joined.user}: endpoint ${joined.endpoint.name} (id ${joined.endpoint.id}), hubs ${
        joined.bootstraps.join(", ")
      }${linkNote(joined, wait)}`,
    );
  },
};

/** `ztm join MESH --invite=…`: the agent enrolls through the invite's hub, then joins. */
async function joinWithInvite(
  flags: Flags,
  mesh: string,
  name: string | undefined,
  inviteFlag: string,
): Promise<void> {
  for (const flag of ["ca", "cert", "key"]) {
    if (flags.string(flag) !== undefined) {
      throw new UsageError(`--${flag} does not go with --invite: the agent makes its own key`);
    }
  }
  let invite = inviteFlag;
  if (invite.startsWith("@")) {
    try {
      invite = Deno.readTextFileSync(invite.slice(1));
    } catch (err) {
      throw new Error(
        `Cannot read the --invite file "${invite.slice(1)}": ${(err as Error).message}`,
      );
    }
  }
  invite = invite.trim();
  const hubs = flags.string("hub") === undefined ? undefined : hubAddresses(flags);
  const body: InviteJoinBody = {
    invite,
    ...(name === undefined ? {} : { agent: { name } }),
    ...(hubs ? { bootstraps: hubs } : {}),
  };
  const wait = waitFor(flags);
  const client = connect(flags, (wait + 60) * 1000);
  const started = performance.now();
  const joined = await withProgress(
    flags,
    wait,
    `Joining mesh "${mesh}" with an invite`,
    hubs ?? ["the invite's hubs"],
    () => client.joinWithInvite(mesh, body, { wait }),
  );
  if (flags.boolean("json")) return printJson(joined);
  console.log(
    `Joined mesh "${joined.name}" as user ${joined.user}: endpoint ${joined.endpoint.name} (id ${joined.endpoint.id}), hubs ${
      joined.bootstraps.join(", ")
    }${linkNote(joined, wait)} in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
      "its key was made here and never left this machine",
  );
}

/**
 * The `--hub` list as `host:port`s. A URL is taken for its host and port
 * (`https://hub.example.com:8888/`); any other scheme is refused with the form wanted.
 */
export function hubAddresses(flags: Flags): string[] {
  const list = (flags.string("hub") ?? "").split(",").map((p) => p.trim()).filter((p) => p);
  if (list.length === 0) throw new UsageError("--hub needs at least one HOST:PORT");
  return list.map((item) => {
    let text = item;
    const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)[/?#]?.*$/.exec(item);
    if (url) {
      if (url[1].toLowerCase() !== "https") {
        throw new UsageError(
          `--hub: "${item}" is a ${url[1]} URL; give the hub as HOST:PORT, ` +
            `e.g. hub.example.com:${DEFAULT_HUB_PORT} (agents reach hubs over TLS only)`,
        );
      }
      text = url[2];
    }
    try {
      const a = parseHostPort(text, DEFAULT_HUB_PORT);
      if (a.port === 0) throw new UsageError(`Bad port in address "${text}": use 1 to 65535`);
      return formatHostPort(a);
    } catch (err) {
      throw new UsageError(
        `--hub: ${
          (err as Error).message
        }; give HOST:PORT, e.g. hub.example.com:${DEFAULT_HUB_PORT}`,
      );
    }
  });
}

/** Seconds the agent waits for the hub (0 with --no-wait). */
function waitFor(flags: Flags): number {
  if (flags.boolean("no-wait")) return 0;
  const wait = flags.integer("timeout");
  if (wait < 1 || wait > MAX_JOIN_WAIT_S) {
    throw new UsageError(`--timeout must be 1 to ${MAX_JOIN_WAIT_S} seconds`);
  }
  return wait;
}

/**
 * Runs `call`, telling the user on stderr what it waits for once it takes
 * longer than a moment (a quick answer or refusal prints nothing extra).
 */
async function withProgress<T>(
  flags: Flags,
  wait: number,
  what: string,
  hubs: string[],
  call: () => Promise<T>,
): Promise<T> {
  const timer = wait === 0 || flags.boolean("json") ? undefined : setTimeout(() => {
    console.error(`${what}: waiting up to ${wait} s for the hub at ${hubs.join(", ")} …`);
  }, PROGRESS_AFTER_MS);
  try {
    return await call();
  } finally {
    clearTimeout(timer);
  }
}

function linkNote(mesh: MeshSummary, wait: number): string {
  if (wait === 0) return " (not waiting for the hub: see ztm status)";
  return mesh.status?.connected ? `; connected to ${mesh.status.hub}` : "";
}

/** `ztm mesh set-hubs`. */
export const SET_HUBS: Command = {
  spec: {
    name: "ztm mesh set-hubs",
    summary: "Changes a mesh's hub addresses in place (no leave and rejoin); waits for the hub.",
    args: [{ name: "MESH", help: "the mesh" }],
    flags: [HUB_FLAG, ...WAIT_FLAGS, ...AGENT_FLAGS],
    examples: ["ztm mesh set-hubs work --hub=hub.example.com:8888,hub2.example.com:8888"],
  },
  async run(flags) {
    const mesh = flags.arg("MESH")!;
    const hubs = hubAddresses(flags);
    const wait = waitFor(flags);
    const client = connect(flags, (wait + 30) * 1000);
    const changed = await withProgress(
      flags,
      wait,
      `Changing the hubs of mesh "${mesh}"`,
      hubs,
      () => client.setHubs(mesh, hubs, { wait }),
    );
    if (flags.boolean("json")) return printJson(changed);
    console.log(
      `Mesh "${changed.name}" now uses hubs ${changed.bootstraps.join(", ")}${
        linkNote(changed, wait)
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
      "Shows every mesh of the agent: hub link state, the hub, endpoints the hub knows, certificate expiry; a line per hub, and the mesh CA's end from a year before.",
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
      const hubs = m.status?.hubs ?? [];
      if (hubs.length > 1) {
        for (const hub of hubs) lines.push(`${m.name}: ${hubLine(hub)}`);
      }
      if (m.caCertificate?.warning) {
        lines.push(`${m.name}: MESH CA EXPIRING: ${safeText(m.caCertificate.warning)}`);
      }
      if (m.status?.lastError) {
        lines.push(`${m.name}: last hub error: ${safeText(m.status.lastError)}`);
      }
      if (m.status?.crlAlarm) {
        lines.push(`${m.name}: REVOCATION ALARM: ${safeText(m.status.crlAlarm)}`);
      }
      const renewal = m.certificate.renewal;
      if (renewal?.warning) {
        lines.push(`${m.name}: CERTIFICATE RENEWAL FAILING: ${safeText(renewal.warning)}`);
      } else if (renewal?.lastError) {
        lines.push(
          `${m.name}: certificate renewal failed, retrying: ${safeText(renewal.lastError)}`,
        );
      } else if (renewal?.lastRenewedAt) {
        lines.push(
          `${m.name}: certificate renewed ${renewal.renewals} time${
            renewal.renewals === 1 ? "" : "s"
          } (last ${renewal.lastRenewedAt}); next renewal at ${renewal.renewAt}`,
        );
      }
    }
    console.log(lines.join("\n"));
  },
};

/**
 * One hub session in words: `hub ADDRESS: up since TIME, round trip 3 ms`, or
 * `hub ADDRESS: down since TIME: the last error`.
 */
export function hubLine(
  hub: NonNullable<NonNullable<MeshSummary["status"]>["hubs"]>[number],
): string {
  const head = `hub ${safeText(hub.address)}: ${hub.connected ? "up" : "down"} since ${hub.since}`;
  if (hub.connected) {
    return hub.rttMs === null
      ? `${head}, round trip not measured yet`
      : `${head}, round trip ${hub.rttMs} ms`;
  }
  if (!hub.lastError) return `${head}: not reached yet`;
  const words = hub.problem && hub.problem !== hub.lastError
    ? `${hub.problem} (${hub.lastError})`
    : hub.lastError;
  return `${head}: ${safeText(words)}`;
}

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
