/**
 * `ztm proxy on|off|status`: the agent's SOCKS5 and HTTP proxy for a mesh,
 * which reaches mesh services by name (`ssh.mesh`, `web.office.mesh`; see
 * the README's "Reach everything by name").
 */
import type { ProxyStatus } from "@ztm/shared/agent_api";
import { safeText } from "@ztm/shared/errors";
import type { Command } from "./command.ts";
import { AGENT_FLAGS, chooseMesh, connect, MESH_FLAG, printJson } from "./connect.ts";

/** What `status` and the other commands print about a proxy. */
export function proxyText(mesh: string, s: ProxyStatus): string {
  if (!s.enabled) return `The proxy of mesh "${mesh}" is off`;
  if (!s.listening) {
    return `The proxy of mesh "${mesh}" is on at ${s.listen} but not listening: ${
      s.error ?? "unknown"
    }`;
  }
  const counts = s.state
    ? [
      `  ${s.state.connections} connection(s) since it started, ${s.state.bytesUp} bytes up, ${s.state.bytesDown} down${
        s.state.lastError ? `; last refusal: ${s.state.lastError.message}` : ""
      }`,
    ]
    : [];
  return [
    `The proxy of mesh "${mesh}" listens on ${s.address} (SOCKS5 and HTTP), ${s.connections} connection(s) open`,
    ...counts,
    `  curl --socks5-hostname ${s.address} http://SERVICE.mesh/`,
    `  curl -x http://${s.address} http://SERVICE.mesh/`,
    `  ssh -o ProxyCommand='nc -X 5 -x ${s.address} %h %p' USER@SERVICE.mesh`,
  ].join("\n");
}

function printProxy(mesh: string, status: ProxyStatus): void {
  console.log(proxyText(mesh, status).split("\n").map(safeText).join("\n"));
}

/** `ztm proxy on`. */
export const PROXY_ON: Command = {
  spec: {
    name: "ztm proxy on",
    summary: "Turns on the agent's SOCKS5 and HTTP proxy that reaches mesh services by name.",
    args: [],
    flags: [
      {
        name: "listen",
        kind: "string",
        default: "127.0.0.1:1080",
        help: "HOST:PORT to listen on (loopback only: the proxy has no authentication)",
      },
      {
        name: "exit",
        kind: "string",
        optional: true,
        help:
          "endpoint whose exit carries names outside the mesh (default: none, they are refused)",
      },
      MESH_FLAG,
      ...AGENT_FLAGS,
    ],
    examples: [
      "ztm proxy on",
      "ztm proxy on --listen=127.0.0.1:8118 --mesh=work",
      "ztm proxy on --exit=office-gw",
    ],
  },
  async run(flags) {
    const client = connect(flags);
    const mesh = await chooseMesh(client, flags);
    const status = await client.proxyOn(
      mesh.name,
      flags.string("listen"),
      flags.string("exit") || undefined,
    );
    if (flags.boolean("json")) return printJson(status);
    printProxy(mesh.name, status);
  },
};

/** `ztm proxy off`. */
export const PROXY_OFF: Command = {
  spec: {
    name: "ztm proxy off",
    summary: "Turns the proxy off and closes its connections.",
    args: [],
    flags: [MESH_FLAG, ...AGENT_FLAGS],
    examples: ["ztm proxy off"],
  },
  async run(flags) {
    const client = connect(flags);
    const mesh = await chooseMesh(client, flags);
    const status = await client.proxyOff(mesh.name);
    if (flags.boolean("json")) return printJson(status);
    printProxy(mesh.name, status);
  },
};

/** `ztm proxy status`. */
export const PROXY_STATUS: Command = {
  spec: {
    name: "ztm proxy status",
    summary: "Says whether the proxy is on, where it listens, and how to use it.",
    args: [],
    flags: [MESH_FLAG, ...AGENT_FLAGS],
    examples: ["ztm proxy status --json"],
  },
  async run(flags) {
    const client = connect(flags);
    const mesh = await chooseMesh(client, flags);
    const status = await client.proxy(mesh.name);
    if (flags.boolean("json")) return printJson(status);
    printProxy(mesh.name, status);
  },
};
