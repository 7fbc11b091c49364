/**
 * `ztm create|delete service|port`: offer a service on an endpoint, or map a
 * local port of an endpoint to a mesh service — on this agent's endpoint by
 * default, or on any endpoint of the mesh (`--endpoint`), which the agent
 * reaches through the hub with a signed request.
 */
import type { PortAddress, ServiceProto } from "@ztm/shared/agent_api";
import {
  type Flags,
  type FlagSpec,
  formatHostPort,
  parseHostPort,
  UsageError,
} from "@ztm/shared/flags";
import { safeText } from "@ztm/shared/errors";
import { SERVICE_PROTOS } from "@ztm/shared/protocol";
import type { Command } from "./command.ts";
import { AGENT_FLAGS, chooseEndpoint, connect, ENDPOINT_FLAG, MESH_FLAG } from "./connect.ts";
import { printJson } from "./connect.ts";

/** Listen address of a port mapping given as a bare port. */
const DEFAULT_LISTEN_IP = "127.0.0.1";

const WHERE_FLAGS: FlagSpec[] = [MESH_FLAG, ENDPOINT_FLAG, ...AGENT_FLAGS];

/** Reads `PROTO/NAME` (or a bare `NAME`, meaning tcp). */
export function parseServiceName(
  text: string,
  what: string,
): { proto: ServiceProto; name: string } {
  const slash = text.indexOf("/");
  const proto = slash < 0 ? "tcp" : text.slice(0, slash);
  const name = text.slice(slash + 1);
  if (!SERVICE_PROTOS.includes(proto as ServiceProto)) {
    throw new UsageError(
      `${what}: unknown protocol "${proto}" in "${text}"; use tcp/NAME or udp/NAME`,
    );
  }
  if (name === "") throw new UsageError(`${what}: "${text}" names no service; use tcp/NAME`);
  return { proto: proto as ServiceProto, name };
}

/** Reads `[IP:]PORT` (`[v6]:PORT` for IPv6); a bare port listens on 127.0.0.1. */
export function parseListen(text: string, proto: ServiceProto): PortAddress {
  if (/^\d+$/.test(text)) return { ip: DEFAULT_LISTEN_IP, proto, port: Number(text) };
  try {
    const { hostname, port } = parseHostPort(text);
    return { ip: hostname, proto, port };
  } catch (err) {
    throw new UsageError(`[IP:]PORT: ${(err as Error).message}`);
  }
}

function listenText(a: PortAddress): string {
  return (a.proto === "udp" ? "udp " : "") + formatHostPort({ hostname: a.ip, port: a.port });
}

/** `ztm create service`. */
export const CREATE_SERVICE: Command = {
  spec: {
    name: "ztm create service",
    summary:
      "Offers HOST:PORT, as reached from the endpoint, to the mesh as a service (replaces one of the same name).",
    args: [{ name: "PROTO/NAME", help: "the service: tcp/ssh (or just ssh), udp/dns" }],
    flags: [
      { name: "host", kind: "string", help: "host of the target, as the endpoint reaches it" },
      { name: "port", kind: "integer", help: "port of the target" },
      {
        name: "users",
        kind: "string",
        optional: true,
        help: "users allowed besides the endpoint's user and root: a,b or * for every member",
      },
      {
        name: "strict",
        kind: "boolean",
        help: "narrowing the users later also closes live connections of users no longer allowed",
      },
      ...WHERE_FLAGS,
    ],
    examples: [
      "ztm create service tcp/ssh --host=10.0.0.5 --port=22 --users=alice --strict",
      "ztm create service tcp/web --host=127.0.0.1 --port=8080 --users='*' --endpoint=office",
      "ztm create service udp/dns --host=10.0.0.53 --port=53 --users='*'   # DNS through the mesh",
    ],
  },
  async run(flags) {
    const service = parseServiceName(flags.arg("PROTO/NAME")!, "PROTO/NAME");
    const users = flags.string("users")?.split(",").map((u) => u.trim()).filter((u) => u);
    const client = connect(flags);
    const { mesh, endpoint } = await chooseEndpoint(client, flags);
    const created = await client.createService(mesh.name, endpoint, {
      ...service,
      host: flags.string("host")!,
      port: flags.integer("port"),
      ...(users === undefined ? {} : { users }),
      strict: flags.boolean("strict"),
    });
    if (flags.boolean("json")) return printJson(created);
    console.log(safeText(
      `Service ${created.proto}/${created.name} → ${
        formatHostPort({ hostname: created.host, port: created.port })
      } on endpoint ${endpointText(flags, mesh.endpoint.name)} of mesh "${mesh.name}", for ${
        created.users.includes("*")
          ? "every member"
          : ["the endpoint's user", "root", ...created.users].join(", ")
      }`,
    ));
  },
};

/** `ztm delete service`. */
export const DELETE_SERVICE: Command = {
  spec: {
    name: "ztm delete service",
    summary: "Stops offering a service.",
    args: [{ name: "PROTO/NAME", help: "the service: tcp/ssh (or just ssh), udp/dns" }],
    flags: WHERE_FLAGS,
    examples: ["ztm delete service tcp/ssh", "ztm delete service udp/dns --endpoint=office"],
  },
  async run(flags) {
    const service = parseServiceName(flags.arg("PROTO/NAME")!, "PROTO/NAME");
    const client = connect(flags);
    const { mesh, endpoint } = await chooseEndpoint(client, flags);
    const deleted = await client.deleteService(mesh.name, endpoint, service);
    if (flags.boolean("json")) return printJson(deleted);
    console.log(safeText(
      `Deleted service ${deleted.proto}/${deleted.name} on endpoint ${
        endpointText(flags, mesh.endpoint.name)
      }`,
    ));
  },
};

/** `ztm create port`. */
export const CREATE_PORT: Command = {
  spec: {
    name: "ztm create port",
    summary:
      "Maps a local port of the endpoint to a mesh service: each connection to it is tunnelled to a provider.",
    args: [{ name: "[IP:]PORT", help: `where to listen (IP default: ${DEFAULT_LISTEN_IP})` }],
    flags: [
      {
        name: "service",
        kind: "string",
        help: "the mesh service: tcp/ssh (or just ssh); udp/dns maps a UDP port",
      },
      {
        name: "via",
        kind: "string",
        optional: true,
        help: "the providing endpoint (id or name); default: any provider of the service",
      },
      {
        name: "user",
        kind: "string",
        optional: true,
        help: "whose service (default: the only user offering that name)",
      },
      ...WHERE_FLAGS,
    ],
    examples: [
      "ztm create port 2222 --service=tcp/ssh",
      "ztm create port 127.0.0.1:8080 --service=tcp/web --via=office --endpoint=laptop",
      "ztm create port 5353 --service=udp/dns   # then: dig @127.0.0.1 -p 5353 example.internal",
    ],
  },
  async run(flags) {
    const service = parseServiceName(flags.string("service")!, "--service");
    const address = parseListen(flags.arg("[IP:]PORT")!, service.proto);
    const via = flags.string("via");
    const user = flags.string("user");
    const client = connect(flags);
    const { mesh, endpoint } = await chooseEndpoint(client, flags);
    const opened = await client.openPort(mesh.name, endpoint, address, {
      service: service.name,
      ...(user === undefined ? {} : { user }),
      ...(via === undefined ? {} : { endpoint: via }),
    });
    if (flags.boolean("json")) return printJson(opened);
    console.log(safeText(
      `Port ${listenText(opened)} on endpoint ${
        endpointText(flags, mesh.endpoint.name)
      } → ${opened.proto}/${opened.target.service}${
        opened.target.endpoint ? ` via ${opened.target.endpoint}` : ""
      }`,
    ));
    if (opened.warning) console.error(`Warning: ${safeText(opened.warning)}`);
  },
};

/** `ztm delete port`. */
export const DELETE_PORT: Command = {
  spec: {
    name: "ztm delete port",
    summary: "Closes a port mapping and its open connections.",
    args: [{
      name: "[IP:]PORT",
      help: `the mapping's listen address (IP default: ${DEFAULT_LISTEN_IP})`,
    }],
    flags: [
      { name: "udp", kind: "boolean", help: "the UDP mapping on that address (default: TCP)" },
      ...WHERE_FLAGS,
    ],
    examples: [
      "ztm delete port 2222",
      "ztm delete port 127.0.0.1:8080 --endpoint=laptop",
      "ztm delete port 5353 --udp",
    ],
  },
  async run(flags) {
    const address = parseListen(flags.arg("[IP:]PORT")!, flags.boolean("udp") ? "udp" : "tcp");
    const client = connect(flags);
    const { mesh, endpoint } = await chooseEndpoint(client, flags);
    const closed = await client.closePort(mesh.name, endpoint, address);
    if (flags.boolean("json")) return printJson(closed);
    console.log(safeText(
      `Deleted port ${listenText(closed)} on endpoint ${endpointText(flags, mesh.endpoint.name)}`,
    ));
  },
};

function endpointText(flags: Flags, own: string): string {
  return flags.string("endpoint") ?? own;
}
