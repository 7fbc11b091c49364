/**
 * A mesh, its services and its port mappings declared in the agent's config
 * file (`--config`), applied through the agent's own API at every start, so
 * an endpoint's setup is kept in git and a second start changes nothing.
 *
 * ```toml
 * [agent.meshes.work]
 * hubs = ["hub.example.com:8888"]
 * ca = "ca.crt"              # paths are the config file's folder's
 * certificate = "web-1.crt"
 * key = "web-1.key"
 *
 * [[agent.meshes.work.services]]
 * service = "tcp/ssh"        # or "ssh"; "udp/dns" for a UDP service
 * target = "127.0.0.1:22"
 * users = ["alice"]
 *
 * [[agent.meshes.work.ports]]
 * listen = "127.0.0.1:8080"
 * service = "web"
 * ```
 *
 * Applying is additive: what is declared is joined, offered or mapped (and
 * brought in line when it differs); what is not declared is left alone. It
 * talks to the agent as any client does and holds no state of its own.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import type { ConfigFile, ConfigProblem } from "@ztm/shared/config";
import { parseHostPort } from "@ztm/shared/flags";
import type { LogFields, Logger } from "@ztm/shared/log";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import type { AgentClient, PortMapping, ServiceProto } from "./client.ts";

/** A service the endpoint offers. */
export interface DeclaredService {
  proto: ServiceProto;
  name: string;
  host: string;
  port: number;
  users?: string[];
}

/** A local port mapped to a mesh service. */
export interface DeclaredPort {
  ip: string;
  proto: ServiceProto;
  port: number;
  target: PortMapping["target"];
}

/** One declared mesh with the files it joins with (paths resolved). */
export interface DeclaredMesh {
  name: string;
  hubs: string[];
  ca: string;
  certificate: string;
  key: string;
  endpoint?: string;
  services: DeclaredService[];
  ports: DeclaredPort[];
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `tcp/NAME`, `udp/NAME` or `NAME` (tcp) → proto and name; null when it is none. */
function serviceName(text: unknown): { proto: ServiceProto; name: string } | null {
  if (typeof text !== "string") return null;
  const [proto, name] = text.includes("/") ? text.split("/", 2) : ["tcp", text];
  if ((proto !== "tcp" && proto !== "udp") || !NAME_PATTERN.test(name)) return null;
  return { proto, name };
}

/**
 * The meshes declared under `[agent.meshes.NAME]` in `file`, with every
 * problem found (each with its line). Reads no key file: that happens when
 * they are applied.
 */
export function readDeclarations(file: ConfigFile): {
  meshes: DeclaredMesh[];
  problems: ConfigProblem[];
} {
  const meshes: DeclaredMesh[] = [];
  const problems: ConfigProblem[] = [];
  const agent = file.values.agent;
  if (!isTable(agent) || agent.meshes === undefined) return { meshes, problems };
  const at = (key: string) => file.lines.get(key) ?? file.lines.get("agent.meshes") ?? 0;
  if (!isTable(agent.meshes)) {
    problems.push({ line: at("agent.meshes"), message: "agent.meshes must be a table of meshes" });
    return { meshes, problems };
  }
  const base = dirname(resolve(file.path));
  const filePath = (v: unknown) =>
    typeof v === "string" && v !== "" ? (isAbsolute(v) ? v : resolve(base, v)) : null;
  for (const [name, raw] of Object.entries(agent.meshes)) {
    const where = `agent.meshes.${name}`;
    const line = at(where);
    const problem = (message: string, l = line) => problems.push({ line: l, message });
    if (!NAME_PATTERN.test(name)) problem(`mesh name "${name}" uses characters a mesh name cannot`);
    if (!isTable(raw)) {
      problem(`${where} must be a table`);
      continue;
    }
    const hubs = Array.isArray(raw.hubs)
      ? raw.hubs
      : typeof raw.hubs === "string"
      ? [raw.hubs]
      : [];
    if (hubs.length === 0) problem(`${where}: hubs is required ("host:port" or a list)`);
    for (const hub of hubs) {
      try {
        if (typeof hub !== "string") throw new Error("not a string");
        parseHostPort(hub);
      } catch (err) {
        problem(`${where}: hub ${JSON.stringify(hub)}: ${(err as Error).message}`);
      }
    }
    const files = {
      ca: filePath(raw.ca),
      certificate: filePath(raw.certificate),
      key: filePath(raw.key),
    };
    for (const [k, v] of Object.entries(files)) {
      if (!v) problem(`${where}: ${k} (a file) is required`);
    }
    if (
      raw.endpoint !== undefined &&
      (typeof raw.endpoint !== "string" || !NAME_PATTERN.test(raw.endpoint))
    ) {
      problem(`${where}: endpoint must be an endpoint name`);
    }
    const services: DeclaredService[] = [];
    const list = (key: string) =>
      Array.isArray(raw[key]) ? raw[key] as unknown[] : raw[key] === undefined ? [] : null;
    const serviceList = list("services");
    if (serviceList === null) problem(`${where}.services must be a list of tables ([[…services]])`);
    (serviceList ?? []).forEach((s, i) => {
      const l = at(`${where}.services.${i}`);
      const named = isTable(s) ? serviceName(s.service) : null;
      if (!isTable(s) || !named) {
        return problem(`${where}.services: service must be "tcp/NAME", "udp/NAME" or "NAME"`, l);
      }
      let target;
      try {
        if (typeof s.target !== "string") throw new Error('target must be "host:port"');
        target = parseHostPort(s.target);
      } catch (err) {
        return problem(`${where}.services: ${named.name}: ${(err as Error).message}`, l);
      }
      if (
        s.users !== undefined &&
        !(Array.isArray(s.users) && s.users.every((u) => typeof u === "string"))
      ) {
        return problem(`${where}.services: ${named.name}: users must be a list of user names`, l);
      }
      services.push({
        ...named,
        host: target.hostname,
        port: target.port,
        users: s.users as string[] | undefined,
      });
    });
    const ports: DeclaredPort[] = [];
    const portList = list("ports");
    if (portList === null) problem(`${where}.ports must be a list of tables ([[…ports]])`);
    (portList ?? []).forEach((p, i) => {
      const l = at(`${where}.ports.${i}`);
      const named = isTable(p) ? serviceName(p.service) : null;
      if (!isTable(p) || !named) {
        return problem(`${where}.ports: service must be "tcp/NAME", "udp/NAME" or "NAME"`, l);
      }
      let listen;
      try {
        listen = parseHostPort(
          typeof p.listen === "number" ? `127.0.0.1:${p.listen}` : String(p.listen ?? ""),
        );
        if (listen.port === 0) throw new Error("a port mapping needs a port");
      } catch (err) {
        return problem(`${where}.ports: listen: ${(err as Error).message}`, l);
      }
      const target: PortMapping["target"] = { service: named.name };
      for (const k of ["endpoint", "user"] as const) {
        if (p[k] === undefined) continue;
        if (typeof p[k] !== "string" || !NAME_PATTERN.test(p[k] as string)) {
          return problem(`${where}.ports: ${k} must be a name`, l);
        }
        target[k] = p[k] as string;
      }
      ports.push({ ip: listen.hostname, proto: named.proto, port: listen.port, target });
    });
    if (files.ca && files.certificate && files.key) {
      meshes.push({
        name,
        hubs: hubs as string[],
        ca: files.ca,
        certificate: files.certificate,
        key: files.key,
        endpoint: raw.endpoint as string | undefined,
        services,
        ports,
      });
    }
  }
  return { meshes, problems };
}

/** What one application did. */
export interface Applied {
  joined: number;
  changed: number;
  unchanged: number;
  failed: number;
}

function sameUsers(a: string[] | undefined, b: string[] | undefined): boolean {
  return JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());
}

/**
 * Joins, offers and maps what `meshes` declare, through `client`. Each item
 * that fails is logged at error with its reason and the rest go on; never throws.
 */
export async function applyDeclarations(
  client: AgentClient,
  meshes: DeclaredMesh[],
  log: Logger,
): Promise<Applied> {
  const done: Applied = { joined: 0, changed: 0, unchanged: 0, failed: 0 };
  const attempt = async (
    what: LogFields,
    fn: () => Promise<"changed" | "unchanged">,
  ) => {
    try {
      done[await fn()]++;
    } catch (err) {
      done.failed++;
      log.error("declared item not applied", { ...what, err: (err as Error).message });
    }
  };
  for (const m of meshes) {
    let endpointId: string;
    try {
      const joined = (await client.meshes()).find((s) => s.name === m.name);
      if (joined) {
        endpointId = joined.endpoint.id;
      } else {
        const summary = await client.join(m.name, {
          ca: await Deno.readTextFile(m.ca),
          agent: {
            ...(m.endpoint ? { name: m.endpoint } : {}),
            certificate: await Deno.readTextFile(m.certificate),
            privateKey: await Deno.readTextFile(m.key),
          },
          bootstraps: m.hubs,
        });
        endpointId = summary.endpoint.id;
        done.joined++;
        log.info("declared mesh joined", { mesh: m.name, endpoint: summary.endpoint.name });
      }
    } catch (err) {
      done.failed += 1 + m.services.length + m.ports.length;
      log.error("declared mesh not joined", { mesh: m.name, err: (err as Error).message });
      continue;
    }
    const services = await client.services(m.name, endpointId).catch(() => []);
    for (const s of m.services) {
      await attempt({ mesh: m.name, service: `${s.proto}/${s.name}` }, async () => {
        const have = services.find((x) => x.proto === s.proto && x.name === s.name);
        if (
          have && have.host === s.host && have.port === s.port && sameUsers(have.users, s.users)
        ) {
          return "unchanged";
        }
        await client.createService(m.name, endpointId, { ...s, users: s.users ?? [] });
        return "changed";
      });
    }
    const ports = await client.ports(m.name, endpointId).catch(() => []);
    for (const p of m.ports) {
      await attempt(
        { mesh: m.name, addr: `${p.ip}:${p.port}`, service: p.target.service },
        async () => {
          const have = ports.find((x) => x.ip === p.ip && x.proto === p.proto && x.port === p.port);
          // Only what is declared counts: a pool user fixed at first use is not a difference.
          const same = have && have.target.service === p.target.service &&
            (p.target.endpoint === undefined || have.target.endpoint === p.target.endpoint) &&
            (p.target.user === undefined || have.target.user === p.target.user);
          if (same) return "unchanged";
          if (have) await client.closePort(m.name, endpointId, p);
          await client.openPort(m.name, endpointId, p, p.target);
          return "changed";
        },
      );
    }
  }
  // count: items joined, offered or mapped now; the ones already in place are not counted.
  log.info("config applied", { count: done.joined + done.changed });
  if (done.failed) log.error("config not fully applied", { count: done.failed });
  return done;
}
