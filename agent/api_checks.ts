/**
 * Checks of the agent API's request parts (names, hosts, ports, listen
 * addresses, bodies), each throwing `BadRequest` with a message that names the
 * bad value and the rule; and the mapping of raw listen failures to API errors.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { formatHostPort } from "@ztm/shared/flags";
import { ENDPOINT_ID_PATTERN, NAME_PATTERN, type ServiceProto } from "@ztm/shared/protocol";
import type { LocalService, PortMapping } from "./runtime.ts";

/** Most users one service may name. */
export const MAX_SERVICE_USERS = 1000;

export function checkFields(obj: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      throw agentError(
        "bad_request",
        `${what} has an unknown field "${key}"; allowed: ${allowed.join(", ")}`,
      );
    }
  }
}

export function checkProto(text: string): ServiceProto {
  if (text !== "tcp" && text !== "udp") {
    throw agentError("bad_proto", `Unknown protocol "${text}"; use tcp or udp`);
  }
  return text;
}

export const NAME_RULE = "1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -";

export function checkServiceName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw agentError("bad_service_name", `Bad service name "${name}": use ${NAME_RULE}`);
  }
}

export function checkServiceBody(
  proto: ServiceProto,
  name: string,
  body: Record<string, unknown>,
): LocalService {
  checkFields(body, ["host", "port", "users", "strict"], "Service");
  const host = checkHost(body.host);
  const port = body.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw agentError("bad_port", `Bad port ${JSON.stringify(port)}: use a number 1 to 65535`);
  }
  if (body.strict !== undefined && typeof body.strict !== "boolean") {
    throw agentError("bad_strict", "strict must be true or false");
  }
  return { proto, name, host, port, users: checkUsers(body.users), strict: body.strict === true };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOST_LABEL = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$/;

/** The canonical text of an IPv6 literal (brackets optional), or undefined. */
export function canonicalIpv6(text: string): string | undefined {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (!bare.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(bare)) return undefined;
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return undefined; // not a valid IPv6 literal
  }
}

/** A service target host: an IP literal or a DNS name of at most 253 characters. */
export function checkHost(value: unknown): string {
  if (typeof value !== "string" || value === "" || value.length > 253) {
    throw agentError(
      "bad_host",
      "host must be a host name or IP address of 1 to 253 characters",
    );
  }
  if (IPV4.test(value)) return value;
  const v6 = canonicalIpv6(value);
  if (v6 !== undefined) return v6;
  if (!value.replace(/\.$/, "").split(".").every((label) => HOST_LABEL.test(label))) {
    throw agentError(
      "bad_host",
      `Bad host ${JSON.stringify(value)}: use a host name or IP address`,
    );
  }
  return value;
}

export function checkUsers(value: unknown): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) || value.length > MAX_SERVICE_USERS ||
    value.some((u) => typeof u !== "string")
  ) {
    throw agentError(
      "bad_users",
      `users must be a list of at most ${MAX_SERVICE_USERS} user names, or ["*"]`,
    );
  }
  const users = [...new Set(value as string[])];
  if (users.includes("*")) {
    if (users.length !== 1) {
      throw agentError("bad_users", `users is either ["*"] (every member) or a list of names`);
    }
    return users;
  }
  const bad = users.find((u) => !NAME_PATTERN.test(u));
  if (bad !== undefined) {
    throw agentError("bad_users", `Bad user name "${bad}" in users: use ${NAME_RULE}`);
  }
  return users;
}

/** A listen address: an IPv4 or IPv6 literal (stored canonical) or `localhost`. */
export function checkListenIp(text: string): string {
  if (text.toLowerCase() === "localhost") return "localhost";
  if (IPV4.test(text)) return text;
  const v6 = canonicalIpv6(text);
  if (v6 !== undefined) return v6;
  throw agentError(
    "bad_ip",
    `Bad listen address "${text}": use an IPv4 or IPv6 address or localhost`,
  );
}

export function checkPortText(text: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) {
    throw agentError("bad_port", `Bad port "${text}": use 1 to 65535`);
  }
  return port;
}

export function checkPortBody(body: Record<string, unknown>): PortMapping["target"] {
  checkFields(body, ["target"], "Port mapping");
  const t = body.target;
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    throw agentError("bad_target", "target must be an object {service, user?, endpoint?}");
  }
  const fields = t as Record<string, unknown>;
  checkFields(fields, ["service", "user", "endpoint"], "target");
  const { user, endpoint } = fields;
  // `tcp/ssh` and `ssh` name the same service (tcp is the only protocol).
  const service = typeof fields.service === "string"
    ? fields.service.replace(/^tcp\//i, "")
    : fields.service;
  if (typeof service !== "string" || !NAME_PATTERN.test(service)) {
    throw agentError(
      "bad_target",
      `Bad target service ${
        JSON.stringify(fields.service)
      }: use tcp/NAME or NAME, NAME being ${NAME_RULE}`,
    );
  }
  const target: PortMapping["target"] = { service };
  if (user !== undefined) {
    if (typeof user !== "string" || !NAME_PATTERN.test(user)) {
      throw agentError(
        "bad_target",
        `Bad target user ${JSON.stringify(user)}: use ${NAME_RULE}`,
      );
    }
    target.user = user;
  }
  if (endpoint !== undefined) {
    if (
      typeof endpoint !== "string" ||
      !(NAME_PATTERN.test(endpoint) || ENDPOINT_ID_PATTERN.test(endpoint))
    ) {
      throw agentError(
        "bad_target",
        `Bad target endpoint ${JSON.stringify(endpoint)}: use an endpoint id or name`,
      );
    }
    target.endpoint = endpoint;
  }
  return target;
}

/** Turns a raw listen failure into the error the API answers with. */
export function listenError(err: unknown, m: PortMapping): unknown {
  if (err instanceof ZtmError) return err;
  const addr = `${m.ip}/${m.proto}/${m.port}`;
  if (err instanceof Deno.errors.AddrInUse) {
    return agentError("port_in_use", `Port ${addr} is already in use`, { cause: err });
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return agentError(
      "address_unavailable",
      `Address ${m.ip} is not an address of this computer`,
      { cause: err },
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return agentError("port_not_permitted", `Not permitted to listen on ${addr}`, {
      cause: err,
    });
  }
  return err;
}

export function formatAddr(hostname: string, port: number): string {
  return formatHostPort({ hostname, port });
}
