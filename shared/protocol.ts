/**
 * The wire contract between agents and hubs (protocol version 2; the data
 * plane's half — data port, end-to-end TLS, pair framing — is in
 * `peer_protocol.ts`, with the version history).
 *
 * Transport: HTTP/2 over mutual TLS (TLS 1.2+). The agent is always the
 * client; the hub never dials an endpoint. Every request carries
 * `ztm-protocol: 2`; a hub that speaks another version answers 400
 * `protocol_mismatch` naming both versions.
 *
 * Message flow
 *
 * 1. Control. The agent opens one long-lived full-duplex stream
 *    `POST /api/endpoints/{id}/control`. Both directions carry newline-
 *    delimited JSON ({@link AgentMessage} up, {@link HubMessage} down). The
 *    agent's first line is `hello` (its endpoint record and `seed`); the hub
 *    answers `welcome` or closes the stream with an error status. The id must
 *    be the one derived from the session certificate's public key and the
 *    seed (`endpoint_id.ts`): only its key holder can register it, and a hub
 *    restart changes nothing about who owns it. One session controls one
 *    endpoint; each user has a cap on sessions, endpoints and services.
 *    Later `services` lines replace the endpoint's published services.
 *
 * 2. Tunnel pairing. Agent A sends `POST /api/endpoints/{B}/services/{proto}/{name}`.
 *    The hub sends B `{type:"open", sid, service, from, ticket}` on B's
 *    control stream. B pre-checks the service's access rule for the claimed
 *    `from.user` and answers `{type:"accept", sid}` (then presents `ticket` on
 *    the hub's data port) or `{type:"refuse", sid, status, code, message}`.
 *    Only then does the hub answer A: 200 `{sid, ticket}` (A presents its
 *    ticket on the data port; the hub splices the two connections, and A and
 *    B run TLS end to end inside, see `peer_protocol.ts`), or the refusal's
 *    status and JSON error. The hub never carries a tunnel's bytes here.
 *
 * 3. Management. Agent A asks endpoint B to change (or show) its services,
 *    port mappings or audit log with `POST /api/endpoints/{B}/manage`, whose
 *    body is a `SignedRequest` (see `signed_request.ts`). The hub passes it
 *    to B as `{type:"manage", rid, request, from}` and answers A with B's
 *    `{type:"managed", rid, status, body}`. B verifies the signature itself,
 *    so the hub can carry management but not forge it. B's `body` is a
 *    `SignedAnswer` (answer format v1, see `signed_request.ts`): B's status
 *    and body signed by B's key over the request it answers, which A checks
 *    before it believes any result.
 *
 * 4. Revocations. When the CA's CRL changes, the hub sends every agent
 *    `{type:"crl", number}` (a CRL of 100,000 entries is ~5 MB, far past a
 *    control line); agents holding an older one fetch `GET /api/crl`,
 *    verify it against the mesh CA, and keep the newest they have verified.
 *
 * 5. Hub list. After `welcome`, and whenever it changes, the hub sends
 *    `{type:"hubs", hubs:[{addresses, certificate}]}`: every hub of the mesh
 *    as the CA knows it (hubs announce their addresses to the CA; the CA
 *    lists those whose hub certificate is live). An agent dials a listed
 *    address only after checking the certificate itself: signed by the mesh
 *    CA, the hub role, not expired, not on its CRL, and the address's host
 *    among the certificate's names. A list only adds hubs: an agent leaves a
 *    hub when its certificate is revoked or expires, never because a hub
 *    left it out (so a rogue hub cannot talk agents off the others).
 *
 * 6. Data port. `welcome.hub.dataPort` is the hub's plain TCP data port
 *    (see `peer_protocol.ts`); absent: the hub carries no tunnels.
 *
 * 7. Queries. `GET /api/endpoints?offset&limit&q`, `GET /api/endpoints/{id}`,
 *    `GET /api/services?offset&limit&q`, `GET /api/status`, and
 *    `GET /api/crl` (the CA-signed CRL, which agents verify themselves).
 *
 * An agent checks every line a hub sends against these types
 * ({@link checkHubMessage}) before using any field,
 * and refuses (and counts) a line that does not match; a `welcome` comes once
 * per control stream, and only an `error` may come before it.
 *
 * Liveness: both sides send HTTP/2 PING every {@link PING_INTERVAL_MS} and
 * drop the session when no answer arrives within {@link PING_TIMEOUT_MS}.
 */

import { sharedError, type ZtmError } from "./errors.ts";
import type { SignedRequest } from "./signed_request.ts";
import { TICKET_PATTERN } from "./peer_protocol.ts";
import { pathSegment } from "./path_segment.ts";

/** Protocol version spoken by this build. */
export const PROTOCOL_VERSION = 2;

/** Header carrying the protocol version on every request. */
export const PROTOCOL_HEADER = "ztm-protocol";

/** HTTP/2 PING period on both sides. */
export const PING_INTERVAL_MS = 10_000;
/** A PING unanswered this long means the peer is gone. */
export const PING_TIMEOUT_MS = 10_000;
/** HTTP/2 flow-control window for sessions and streams (measured: 16 MiB nearly doubles throughput). */
export const WINDOW_BYTES = 16 * 1024 * 1024;
/** Longest control line either side accepts. */
export const MAX_CONTROL_LINE_BYTES = 256 * 1024;
/** How long the hub waits for a target endpoint to answer a management request. */
export const MANAGE_TIMEOUT_MS = 15_000;
/** Largest management request body the hub accepts. */
export const MAX_MANAGE_BYTES = 128 * 1024;
/** How long the hub waits for a provider to accept or refuse a pair. */
export const OPEN_TIMEOUT_MS = 10_000;

/** Most hubs one `hubs` message may list (a mesh has a handful; more is refused whole). */
export const MAX_HUB_LIST = 64;
/** Most addresses one hub of a `hubs` message may name. */
export const MAX_HUB_ADDRESSES = 8;
/** Longest hub certificate (PEM) a `hubs` message may carry. */
export const MAX_HUB_CERTIFICATE_CHARS = 16 * 1024;

/**
 * The hub's routes, by name: method and path pattern (`:param` segments). The
 * hub routes by this table (`hub/server.ts` gives each a handler) and clients
 * build paths from it ({@link hubPath}, {@link HUB_PATHS}).
 */
export const HUB_ROUTES = {
  control: { method: "POST", pattern: "/api/endpoints/:id/control" },
  tunnel: { method: "POST", pattern: "/api/endpoints/:id/services/:proto/:name" },
  manage: { method: "POST", pattern: "/api/endpoints/:id/manage" },
  endpoints: { method: "GET", pattern: "/api/endpoints" },
  endpoint: { method: "GET", pattern: "/api/endpoints/:id" },
  services: { method: "GET", pattern: "/api/services" },
  status: { method: "GET", pattern: "/api/status" },
  crl: { method: "GET", pattern: "/api/crl" },
  renewals: { method: "POST", pattern: "/api/renewals" },
} as const;

/** The name of a hub route. */
export type HubRoute = keyof typeof HUB_ROUTES;

/** The path of hub route `route` with its `:param` segments filled in (each URI-encoded). */
export function hubPath(route: HubRoute, params: Record<string, string> = {}): string {
  return HUB_ROUTES[route].pattern.replace(/:([a-z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`hub route ${route} needs ${name}`);
    return pathSegment(value);
  });
}

/** Paths of the hub routes, as clients build them (from {@link HUB_ROUTES}). */
export const HUB_PATHS = {
  control: (id: string): string => hubPath("control", { id }),
  tunnel: (id: string, proto: string, name: string): string =>
    hubPath("tunnel", { id, proto, name }),
  manage: (id: string): string => hubPath("manage", { id }),
  endpoints: HUB_ROUTES.endpoints.pattern,
  endpoint: (id: string): string => hubPath("endpoint", { id }),
  services: HUB_ROUTES.services.pattern,
  status: HUB_ROUTES.status.pattern,
  crl: HUB_ROUTES.crl.pattern,
  renewals: HUB_ROUTES.renewals.pattern,
} as const;

/** Service protocols: TCP streams and UDP datagrams (protocol 2.1). */
export type ServiceProto = "tcp" | "udp";
export const SERVICE_PROTOS: readonly ServiceProto[] = ["tcp", "udp"];

/** A service as published to the mesh (its target stays on the provider). */
export interface PublishedService {
  proto: ServiceProto;
  name: string;
  /** Users allowed besides the provider's user and `root`; `["*"]` is everyone. */
  users: string[];
}

/** An endpoint as the hub knows it. */
export interface EndpointRecord {
  id: string;
  name: string;
  user: string;
  online: boolean;
  version: string;
  /** Address the hub sees the endpoint's connection come from. */
  address: string;
  services: PublishedService[];
  /** ISO time of the last (re)connection or disconnection. */
  since: string;
}

/** A mesh-wide service with its providers. */
export interface MeshService {
  proto: ServiceProto;
  name: string;
  user: string;
  providers: { endpoint: string; name: string; online: boolean; users: string[] }[];
}

/** A page of results. */
export interface Page<T> {
  items: T[];
  total: number;
  offset: number;
  limit: number;
}

/** Who is opening a tunnel, as the hub saw their certificate. */
export interface TunnelCaller {
  endpoint: string;
  user: string;
}

/** One hub of the mesh as a `hubs` message lists it (see "Hub list" above). */
export interface HubListEntry {
  /** `host:port` agents dial; each host must be among the certificate's names. */
  addresses: string[];
  /** The hub's certificate (PEM), which the agent checks before dialling. */
  certificate: string;
}

/** Lines the agent sends on its control stream. */
export type AgentMessage =
  | {
    type: "hello";
    name: string;
    version: string;
    services: PublishedService[];
    /** The seed the endpoint id is derived from with the session's key (`endpoint_id.ts`). */
    seed: string;
  }
  | { type: "services"; services: PublishedService[] }
  | { type: "accept"; sid: string }
  | { type: "refuse"; sid: string; status: number; code: string; message: string }
  | { type: "managed"; rid: string; status: number; body: string };

/** Lines the hub sends on a control stream. */
export type HubMessage =
  | {
    type: "welcome";
    endpoint: EndpointRecord;
    /** `dataPort`: the hub's plain TCP data port, if it has one. */
    hub: { version: string; dataPort?: number };
  }
  | {
    type: "open";
    sid: string;
    service: { proto: ServiceProto; name: string };
    from: TunnelCaller;
    /** The provider's one-time ticket for the data port (`ZTM2 <ticket>`). */
    ticket: string;
  }
  | { type: "manage"; rid: string; request: SignedRequest; from: TunnelCaller }
  | { type: "crl"; number: number }
  | { type: "hubs"; hubs: HubListEntry[] }
  | { type: "error"; code: string; message: string };

/**
 * Endpoint ids: `ep-` and 32 lower-case hex digits, derived from the
 * endpoint's public key and seed (`endpoint_id.ts`); no endpoint name has
 * this form. Before key-bound ids, any 1–64 of `A-Za-z0-9_-` (the hub now
 * refuses those; agents migrate theirs on start).
 */
export const ENDPOINT_ID_PATTERN = /^ep-[0-9a-f]{32}$/;
/** Endpoint, service and mesh names: 1–64 of `A-Za-z0-9._-`, not starting with `.` or `-`. */
export const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** Splits a byte stream into lines. Throws a 413 `ZtmError` past `maxBytes` per line. */
export class LineDecoder {
  #buf = "";
  #decoder = new TextDecoder();
  #max: number;
  constructor(maxBytes = MAX_CONTROL_LINE_BYTES) {
    this.#max = maxBytes;
  }
  /** Feeds a chunk; returns the complete lines it finished. */
  push(chunk: Uint8Array): string[] {
    this.#buf += this.#decoder.decode(chunk, { stream: true });
    const lines = this.#buf.split("\n");
    this.#buf = lines.pop() ?? "";
    if (this.#buf.length > this.#max || lines.some((l) => l.length > this.#max)) {
      throw sharedError(
        "control_line_too_large",
        `Control line longer than ${this.#max} bytes`,
      );
    }
    return lines.filter((l) => l.trim() !== "");
  }
}

/**
 * Reads newline-delimited control messages from `stream`: each parsed
 * message (checked by `check`, e.g. {@link checkHubMessage}, when given) goes
 * to `message`; a line that is not a message, or that `check` or `message`
 * throws on, goes to `badLine` and is skipped; a line over the limit goes to
 * `fail`. Nothing a peer sends escapes as an exception.
 */
export function onControlMessages<T extends { type: string }>(
  stream: { on(event: "data", listener: (chunk: Uint8Array) => void): unknown },
  handlers: {
    message: (msg: T) => void;
    fail: (err: unknown) => void;
    badLine?: (err: unknown) => void;
    check?: (value: { type: string } & Record<string, unknown>) => T;
  },
): void {
  const decoder = new LineDecoder();
  stream.on("data", (chunk: Uint8Array) => {
    let lines: string[];
    try {
      lines = decoder.push(chunk);
    } catch (err) {
      handlers.fail(err);
      return;
    }
    for (const line of lines) {
      try {
        const value = parseMessage<{ type: string } & Record<string, unknown>>(line);
        handlers.message(handlers.check ? handlers.check(value) : value as unknown as T);
      } catch (err) {
        handlers.badLine?.(err);
      }
    }
  });
}

/** Parses one control line as an object with a string `type`; throws `BadRequest` on anything else. */
export function parseMessage<T extends { type: string }>(line: string): T {
  let value;
  try {
    value = JSON.parse(line);
  } catch {
    throw sharedError("bad_message", "Control line is not JSON");
  }
  if (typeof value !== "object" || value === null || typeof value.type !== "string") {
    throw sharedError("bad_message", "Control message has no type");
  }
  return value as T;
}

/** Checks a published service list from the wire; throws `BadRequest` naming the first bad entry. */
export function checkPublishedServices(value: unknown): PublishedService[] {
  try {
    return checkServiceList(value);
  } catch (err) {
    throw sharedError("bad_services", (err as Error).message);
  }
}

function checkServiceList(value: unknown): PublishedService[] {
  if (!Array.isArray(value)) throw new Error("services must be an array");
  if (value.length > 1000) throw new Error("at most 1000 services per endpoint");
  return value.map((s, i) => {
    if (typeof s !== "object" || s === null) throw new Error(`services[${i}] is not an object`);
    const { proto, name, users } = s as Record<string, unknown>;
    if (!SERVICE_PROTOS.includes(proto as ServiceProto)) {
      throw new Error(`services[${i}].proto must be tcp`);
    }
    if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
      throw new Error(`services[${i}].name is bad`);
    }
    if (
      !Array.isArray(users) || users.length > 1000 ||
      // Names as the CA issues them, or "*": other members' screens show these.
      users.some((u) => typeof u !== "string" || !(u === "*" || NAME_PATTERN.test(u)))
    ) {
      throw new Error(`services[${i}].users must be a list of user names, or ["*"]`);
    }
    return { proto: proto as ServiceProto, name, users: users as string[] };
  });
}

// Validators for what a hub sends. A hub is trusted to relay, never to be well-formed: every
// line it sends an agent is checked against these types before any field is used, and one
// that does not match is refused (and counted) instead of reaching a handler.

const MAX_WIRE_ID = 256;

function field(where: string, name: string): ZtmError {
  return sharedError("bad_message", `${where} has a bad field "${name}"`);
}

function objectField(v: unknown, where: string, name: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw field(where, name);
  return v as Record<string, unknown>;
}

function stringField(v: unknown, where: string, name: string, max = MAX_WIRE_ID): string {
  if (typeof v !== "string" || v.length > max) throw field(where, name);
  return v;
}

function idField(v: unknown, where: string, name: string): string {
  const s = stringField(v, where, name);
  if (s === "") throw field(where, name);
  return s;
}

function checkCaller(v: unknown, where: string): TunnelCaller {
  const o = objectField(v, where, "from");
  return {
    endpoint: idField(o.endpoint, where, "from.endpoint"),
    user: idField(o.user, where, "from.user"),
  };
}

function checkServiceRef(v: unknown, where: string): { proto: ServiceProto; name: string } {
  const o = objectField(v, where, "service");
  if (!SERVICE_PROTOS.includes(o.proto as ServiceProto)) throw field(where, "service.proto");
  if (typeof o.name !== "string" || !NAME_PATTERN.test(o.name)) throw field(where, "service.name");
  return { proto: o.proto as ServiceProto, name: o.name };
}

/**
 * Checks a parsed control line from a hub against {@link HubMessage}; returns
 * it with only the fields the type names. Throws `BadRequest` (`bad_message`
 * naming the field, or `unknown_message` for a type this version does not know).
 */
export function checkHubMessage(value: { type: string } & Record<string, unknown>): HubMessage {
  const where = `Hub message "${value.type.slice(0, 32)}"`;
  switch (value.type) {
    case "welcome": {
      const hub = objectField(value.hub, where, "hub");
      const port = hub.dataPort;
      if (
        port !== undefined &&
        (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
      ) {
        throw field(where, "hub.dataPort");
      }
      return {
        type: "welcome",
        endpoint: objectField(value.endpoint, where, "endpoint") as unknown as EndpointRecord,
        hub: { version: stringField(hub.version, where, "hub.version"), dataPort: port },
      };
    }
    case "open": {
      if (typeof value.ticket !== "string" || !TICKET_PATTERN.test(value.ticket)) {
        throw field(where, "ticket");
      }
      return {
        type: "open",
        sid: idField(value.sid, where, "sid"),
        service: checkServiceRef(value.service, where),
        from: checkCaller(value.from, where),
        ticket: value.ticket,
      };
    }
    case "manage":
      // `request` is whatever the caller sent: the target checks it itself (`parseSignedRequest`)
      // and answers its errors, so the caller hears why rather than waiting out the hub's timeout.
      return {
        type: "manage",
        rid: idField(value.rid, where, "rid"),
        request: value.request as SignedRequest,
        from: checkCaller(value.from, where),
      };
    case "crl": {
      // Only the number: agents holding an older CRL fetch it (`GET /api/crl?after=N`).
      const n = value.number;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw field(where, "number");
      return { type: "crl", number: n };
    }
    case "hubs": {
      const list = value.hubs;
      if (!Array.isArray(list) || list.length > MAX_HUB_LIST) throw field(where, "hubs");
      return {
        type: "hubs",
        hubs: list.map((entry, i) => {
          const e = objectField(entry, where, `hubs[${i}]`);
          const addresses = e.addresses;
          if (
            !Array.isArray(addresses) || addresses.length > MAX_HUB_ADDRESSES ||
            addresses.some((a) => typeof a !== "string" || a.length > 261)
          ) {
            throw field(where, `hubs[${i}].addresses`);
          }
          return {
            addresses: addresses as string[],
            certificate: stringField(
              e.certificate,
              where,
              `hubs[${i}].certificate`,
              MAX_HUB_CERTIFICATE_CHARS,
            ),
          };
        }),
      };
    }
    case "error":
      return {
        type: "error",
        code: stringField(value.code, where, "code"),
        message: stringField(value.message, where, "message", 4096),
      };
    default:
      throw sharedError("unknown_message", "Hub message of an unknown type");
  }
}
