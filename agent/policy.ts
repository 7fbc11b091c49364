/**
 * An endpoint's local policy for remote management: whether other endpoints
 * may manage this one at all, which service targets (`host:port` patterns)
 * and which listen addresses they may set. Only the endpoint's own local user
 * (through the token-protected local API) changes it; it never applies to
 * local requests.
 */
import { checkFields } from "./api_checks.ts";
import { agentError, type Policy } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { Policy };

/** Remote callers may point services anywhere, but listen on loopback only. */
export const DEFAULT_POLICY: Policy = {
  remoteManagement: true,
  targets: ["*"],
  listen: ["127.0.0.1", "::1", "localhost"],
};

const PATTERN = /^[A-Za-z0-9.:*_\-\[\]]{1,260}$/;

/** Validates a policy body (`PUT …/policy`); fields not given keep `current`'s value. */
export function checkPolicyBody(body: Record<string, unknown>, current: Policy): Policy {
  checkFields(body, ["remoteManagement", "targets", "listen"], "Policy");
  const list = (name: "targets" | "listen"): string[] => {
    const v = body[name];
    if (v === undefined) return current[name];
    if (
      !Array.isArray(v) || v.length > 100 ||
      v.some((p) => typeof p !== "string" || !PATTERN.test(p))
    ) {
      throw agentError(
        "bad_policy",
        `${name} must be a list of at most 100 patterns like "10.0.0.*:22" or "*"`,
      );
    }
    return [...new Set(v as string[])];
  };
  const rm = body.remoteManagement;
  if (rm !== undefined && typeof rm !== "boolean") {
    throw agentError("bad_policy", "remoteManagement must be true or false");
  }
  return {
    remoteManagement: rm ?? current.remoteManagement,
    targets: list("targets"),
    listen: list("listen"),
  };
}

/** `*` matches within one label of a name or address (not across `.` or `:`), case-insensitively. */
function glob(pattern: string, text: string): boolean {
  const re = new RegExp(
    "^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^.:]*") +
      "$",
    "i",
  );
  return re.test(text);
}

/** Splits `host:port`, `[v6]:port`, `[v6]` or `host` into host and port patterns (port `*` if absent). */
function splitPattern(p: string): [string, string] {
  const v6 = /^\[([^\]]+)\](?::(.+))?$/.exec(p);
  if (v6) return [v6[1], v6[2] ?? "*"];
  const at = p.lastIndexOf(":");
  if (at < 0 || p.indexOf(":") !== at) return [p, "*"];
  return [p.slice(0, at), p.slice(at + 1)];
}

/** The pattern of `policy.targets` that allows `host:port`, or undefined. */
export function allowedTarget(policy: Policy, host: string, port: number): string | undefined {
  return policy.targets.find((p) => {
    if (p === "*") return true;
    const [h, portPattern] = splitPattern(p);
    return glob(h, host) && glob(portPattern, String(port));
  });
}

/** True when `policy.listen` allows listening on `ip`. */
export function allowsListen(policy: Policy, ip: string): boolean {
  return policy.listen.some((p) => p === "*" || glob(p, ip));
}
