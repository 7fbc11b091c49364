/**
 * Mesh names for the proxy: how a host name such as `ssh.mesh` or
 * `web.office.mesh` names a mesh service, and how it is resolved against the
 * hub's service listing (the listing port mappings use for their pools).
 *
 * Grammar (labels are separated by dots; case does not matter; a trailing dot
 * is allowed):
 *
 * ```
 * name     = service [ "." endpoint ] [ "." user ".user" ] ".mesh"
 * service  = label     ; the service tcp/<service>
 * endpoint = label     ; pins one provider: its endpoint name or id
 * user     = label     ; whose service, when several users offer the name
 * label    = 1*63( ALPHA / DIGIT / "-" / "_" )
 * ```
 *
 * So `ssh.mesh` is `tcp/ssh` (load-balanced over its providers), `ssh.office.mesh`
 * is `tcp/ssh` on the endpoint `office`, `ssh.alice.user.mesh` is alice's
 * `tcp/ssh`, and `ssh.office.alice.user.mesh` both. A service, endpoint or
 * user whose name contains a dot cannot be named this way (use its port
 * mapping, or the endpoint's id). The port the client asks for is not used:
 * the service decides where the connection goes.
 *
 * This module only parses and resolves; opening tunnels is `mesh_dialer.ts`.
 */
import { agentError } from "@ztm/shared/agent_api";
import type { MeshService } from "@ztm/shared/protocol";

/** The top label every mesh name ends with. */
export const MESH_SUFFIX = "mesh";
/** The label that marks the user part: `SERVICE.USER.user.mesh`. */
export const USER_LABEL = "user";

/** What a mesh name asks for. */
export interface MeshName {
  service: string;
  endpoint?: string;
  user?: string;
}

/** One provider a name resolved to. */
export interface ResolvedProvider {
  endpoint: string;
  name: string;
}

/** A name resolved against the listing: the service, its user, and the online providers to use. */
export interface Resolution {
  proto: "tcp";
  service: string;
  user: string;
  providers: ResolvedProvider[];
}

const LABEL = /^[A-Za-z0-9_-]{1,63}$/;

/** Whether `host` is a mesh name (ends in `.mesh`), whatever its validity. */
export function isMeshName(host: string): boolean {
  const h = host.endsWith(".") ? host.slice(0, -1) : host;
  return h.toLowerCase().endsWith(`.${MESH_SUFFIX}`);
}

/**
 * Parses a mesh name. Returns null when `host` does not end in `.mesh` (it
 * may be an exit destination); throws `BadRequest` (`bad_mesh_name`) for a
 * `.mesh` name that does not follow the grammar.
 */
export function parseMeshName(host: string): MeshName | null {
  if (!isMeshName(host)) return null;
  const h = host.endsWith(".") ? host.slice(0, -1) : host;
  const labels = h.split(".").slice(0, -1);
  const bad = (why: string) =>
    agentError(
      "bad_mesh_name",
      `Bad mesh name "${host.slice(0, 100)}": ${why}; use SERVICE[.ENDPOINT][.USER.user].mesh`,
    );
  if (labels.length === 0) throw bad("no service");
  for (const label of labels) {
    if (!LABEL.test(label)) throw bad(`"${label.slice(0, 64)}" is not a label`);
  }
  let user: string | undefined;
  if (labels.length >= 3 && labels[labels.length - 1].toLowerCase() === USER_LABEL) {
    labels.pop();
    user = labels.pop();
  }
  if (labels.length > 2) throw bad("too many labels");
  const [service, endpoint] = labels;
  return { service, ...(endpoint ? { endpoint } : {}), ...(user ? { user } : {}) };
}

/** `name` written back in the grammar (for messages). */
export function formatMeshName(name: MeshName): string {
  return [name.service, name.endpoint, ...(name.user ? [name.user, USER_LABEL] : []), MESH_SUFFIX]
    .filter((l) => l !== undefined).join(".");
}

/** `wanted` among `have`: the exact spelling, else the only one equal without regard to case. */
function pick<T>(have: T[], key: (t: T) => string, wanted: string): T[] {
  const exact = have.filter((t) => key(t) === wanted);
  if (exact.length > 0) return exact;
  const lower = wanted.toLowerCase();
  return have.filter((t) => key(t).toLowerCase() === lower);
}

/**
 * Resolves `name` against `listing` (the hub's `tcp` services matching the
 * name). Throws `NotFound` (`unknown_service`: nobody offers it, or not on
 * that endpoint or of that user), `Conflict` (`ambiguous_service`, naming
 * the users), or `ServiceUnavailable` (`no_provider_online`).
 */
export function resolveMeshName(name: MeshName, listing: MeshService[]): Resolution {
  const shown = formatMeshName(name);
  let groups = pick(listing.filter((s) => s.proto === "tcp"), (s) => s.name, name.service);
  if (groups.length === 0) {
    throw agentError("unknown_service", `No endpoint offers tcp/${name.service} (${shown})`);
  }
  if (name.user) {
    groups = pick(groups, (g) => g.user, name.user);
    if (groups.length === 0) {
      throw agentError(
        "unknown_service",
        `User ${name.user} offers no tcp/${name.service} (${shown})`,
      );
    }
  }
  if (name.endpoint) {
    const pin = name.endpoint;
    const matches = (p: { endpoint: string; name: string }) =>
      p.endpoint === pin || p.name.toLowerCase() === pin.toLowerCase();
    groups = groups.filter((g) => g.providers.some(matches));
    if (groups.length === 0) {
      throw agentError(
        "unknown_service",
        `Endpoint ${pin} offers no tcp/${name.service} (${shown})`,
      );
    }
    groups = groups.map((g) => ({ ...g, providers: g.providers.filter(matches) }));
  }
  if (groups.length > 1) {
    const users = [...new Set(groups.map((g) => g.user))].sort();
    throw agentError(
      "ambiguous_service",
      `Several users offer tcp/${name.service}: ${users.join(", ")}; name one, as in ${
        formatMeshName({ ...name, user: users[0] })
      }`,
    );
  }
  const group = groups[0];
  const providers = group.providers.filter((p) => p.online).map((p) => ({
    endpoint: p.endpoint,
    name: p.name,
  }));
  if (providers.length === 0) {
    throw agentError(
      "no_provider_online",
      `No provider of tcp/${group.name} of ${group.user} is online (${shown})`,
    );
  }
  return { proto: "tcp", service: group.name, user: group.user, providers };
}
