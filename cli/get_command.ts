/**
 * `ztm get meshes|endpoints|services|ports` and `ztm log`: what an agent
 * knows, as aligned tables or (`--json`) the API's answer as it is.
 */
import type { AgentClient } from "@ztm/agent/client";
import type { EndpointRecord, MeshSummary, TunnelState } from "@ztm/shared/agent_api";
import { bytesText } from "@ztm/shared/bytes_text";
import { type Flags, type FlagSpec, formatHostPort, UsageError } from "@ztm/shared/flags";
import type { Command } from "./command.ts";
import {
  AGENT_FLAGS,
  chooseEndpoint,
  chooseMesh,
  connect,
  ENDPOINT_FLAG,
  MESH_FLAG,
  printJson,
} from "./connect.ts";
import { formatTable, pageNote } from "./table.ts";

const KINDS = ["meshes", "endpoints", "services", "ports"] as const;

const PAGE_FLAGS: FlagSpec[] = [
  { name: "offset", kind: "integer", default: "0", help: "skip this many entries" },
  { name: "limit", kind: "integer", default: "100", help: "show at most this many (≤ 500)" },
];

/** `ztm get`. */
export const GET: Command = {
  spec: {
    name: "ztm get",
    summary: "Lists what the agent knows: joined meshes, a mesh's endpoints, services or ports.",
    args: [{ name: "KIND", help: KINDS.join(" | ") }],
    flags: [
      { ...MESH_FLAG, help: "the mesh (default: the agent's only mesh); meshes: just that one" },
      {
        ...ENDPOINT_FLAG,
        help:
          "endpoints: just that one; services: its services (default: the mesh's); ports: its mappings (default: this one's)",
      },
      { name: "query", kind: "string", optional: true, help: "endpoints, services: search text" },
      ...PAGE_FLAGS,
      ...AGENT_FLAGS,
    ],
    examples: [
      "ztm get meshes",
      "ztm get endpoints --mesh=work --query=office",
      "ztm get services --endpoint=office --json",
    ],
  },
  async run(flags) {
    const kind = flags.arg("KIND")!;
    if (!(KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(`Unknown KIND "${kind}": use ${KINDS.join(", ")}`);
    }
    const client = connect(flags);
    if (kind === "meshes") {
      const mesh = flags.string("mesh");
      if (mesh !== undefined) return show(flags, await client.mesh(mesh), (m) => meshTable([m]));
      return show(flags, await client.meshes(), meshTable);
    }
    if (kind === "endpoints") return await getEndpoints(client, flags);
    if (kind === "services") return await getServices(client, flags);
    return await getPorts(client, flags);
  },
};

/** `ztm log`. */
export const LOG: Command = {
  spec: {
    name: "ztm log",
    summary: "Shows an endpoint's audit log, newest first: who changed what, from where, and how.",
    flags: [MESH_FLAG, ENDPOINT_FLAG, ...PAGE_FLAGS, ...AGENT_FLAGS],
    examples: ["ztm log", "ztm log --endpoint=office --limit=20"],
  },
  async run(flags) {
    const client = connect(flags);
    const { mesh, endpoint } = await chooseEndpoint(client, flags);
    const page = await client.auditLog(mesh.name, endpoint, {
      offset: flags.integer("offset"),
      limit: flags.integer("limit"),
    });
    show(flags, page, (p) =>
      withNote(
        formatTable(
          ["TIME", "USER", "VIA", "METHOD", "PATH", "STATUS", "OUTCOME"],
          p.items.map((e) => [
            e.time,
            e.user,
            e.via,
            e.method,
            e.path,
            String(e.status),
            e.outcome,
          ]),
          "The audit log is empty.",
        ),
        p,
      ));
  },
};

function pageQuery(flags: Flags): { offset: number; limit: number; q?: string } {
  const q = flags.string("query");
  return { offset: flags.integer("offset"), limit: flags.integer("limit"), ...(q ? { q } : {}) };
}

/** Prints `value` as JSON or as the text `render` makes of it. */
function show<T>(flags: Flags, value: T, render: (value: T) => string): void {
  if (flags.boolean("json")) printJson(value);
  else console.log(render(value));
}

function withNote(table: string, page: { total: number; offset: number; items: unknown[] }) {
  const note = pageNote(page);
  return note ? `${table}\n${note}` : table;
}

/** A mesh's hub link in a few words. */
export function linkState(mesh: MeshSummary): string {
  if (!mesh.status) return "not running";
  return mesh.status.connected ? "connected" : "disconnected";
}

function meshTable(meshes: MeshSummary[]): string {
  return formatTable(
    ["MESH", "USER", "ENDPOINT", "HUB", "LINK", "CERTIFICATE EXPIRES"],
    meshes.map((m) => [
      m.name,
      m.user,
      m.endpoint.name,
      m.status?.hub ?? m.bootstraps.join(","),
      linkState(m),
      m.certificate.notAfter,
    ]),
    "No meshes joined; see ztm join --help.",
  );
}

async function getEndpoints(client: AgentClient, flags: Flags): Promise<void> {
  const mesh = await chooseMesh(client, flags);
  const table = (items: EndpointRecord[]) =>
    formatTable(
      ["NAME", "ID", "USER", "STATE", "ADDRESS", "SERVICES"],
      items.map((e) => [
        e.id === mesh.endpoint.id ? `${e.name} (this one)` : e.name,
        e.id,
        e.user,
        e.online ? "online" : "offline",
        e.address,
        e.services.map((s) => `${s.proto}/${s.name}`).join(",") || "-",
      ]),
      "No endpoints.",
    );
  const one = flags.string("endpoint");
  if (one !== undefined) {
    return show(flags, await client.endpoint(mesh.name, one), (e) => table([e]));
  }
  const page = await client.endpoints(mesh.name, pageQuery(flags));
  show(flags, page, (p) => withNote(table(p.items), p));
}

async function getServices(client: AgentClient, flags: Flags): Promise<void> {
  const mesh = await chooseMesh(client, flags);
  const endpoint = flags.string("endpoint");
  if (endpoint !== undefined) {
    const services = await client.services(mesh.name, endpoint);
    return show(flags, services, (list) =>
      formatTable(
        ["SERVICE", "TARGET", "USERS", "STATE", "OPEN", "UP", "DOWN", "LAST ERROR"],
        list.map((s) => [
          `${s.proto}/${s.name}`,
          formatHostPort({ hostname: s.host, port: s.port }),
          s.users.join(",") || "-",
          ...stateCells(s.state),
        ]),
        "This endpoint offers no services.",
      ));
  }
  const page = await client.meshServices(mesh.name, pageQuery(flags));
  show(flags, page, (p) =>
    withNote(
      formatTable(
        ["SERVICE", "USER", "PROVIDERS", "USERS"],
        p.items.map((s) => [
          `${s.proto}/${s.name}`,
          s.user,
          s.providers.map((e) => `${e.name}${e.online ? "" : " (offline)"}`).join(","),
          [...new Set(s.providers.flatMap((e) => e.users))].join(",") || "-",
        ]),
        "No services in this mesh.",
      ),
      p,
    ));
}

async function getPorts(client: AgentClient, flags: Flags): Promise<void> {
  const { mesh, endpoint } = await chooseEndpoint(client, flags);
  const ports = await client.ports(mesh.name, endpoint);
  show(flags, ports, (list) =>
    formatTable(
      ["LISTEN", "SERVICE", "USER", "VIA", "STATE", "OPEN", "UP", "DOWN", "LAST ERROR"],
      list.map((m) => [
        formatHostPort({ hostname: m.ip, port: m.port }),
        `${m.proto}/${m.target.service}`,
        m.target.user ?? "-",
        m.target.endpoint ?? "-",
        ...stateCells(m.state),
      ]),
      "No port mappings.",
    ));
}

/**
 * STATE, OPEN, UP, DOWN and LAST ERROR of a mapping's or service's live state
 * (`-` when unknown). UP is toward the service's target, DOWN back to the client.
 */
function stateCells(state: TunnelState | undefined): string[] {
  if (!state) return ["-", "-", "-", "-", "-"];
  const problem = state.health === "ok"
    ? (state.lastError ? `${state.lastError.message} (${state.lastError.time})` : "-")
    : state.message +
      (state.lastError?.message === state.message ? ` (${state.lastError.time})` : "");
  return [
    state.health.replaceAll("_", " "),
    String(state.open),
    bytesText(state.bytesUp),
    bytesText(state.bytesDown),
    problem,
  ];
}
