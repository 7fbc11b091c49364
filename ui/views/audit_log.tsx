/** @jsxImportSource preact */
/**
 * An endpoint's audit log in words: "bob added service tcp/ssh →
 * 10.0.0.5:22, open to alice", from the calling endpoint by name (looked up
 * once per id through the hub), when (with the time zone and how long ago),
 * and the outcome.
 */
import { useEffect, useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { AuditEntry, EndpointRecord } from "../api_types.ts";
import { ListTable, Time } from "../components.tsx";

/** Names of endpoints by id, looked up once each through the hub (for the audit log's "from"). */
const endpointNames = new Map<string, string | null>();

function useEndpointNames(mesh: string, ids: string[], connected: boolean): Map<string, string> {
  const [, setVersion] = useState(0);
  const key = ids.join(",");
  useEffect(() => {
    if (!connected) return;
    for (const id of new Set(ids)) {
      const k = `${mesh}/${id}`;
      if (endpointNames.has(k)) continue;
      endpointNames.set(k, null);
      void callApi<EndpointRecord>("GET", agentPath(AGENT_PATHS.endpoint, { mesh, ep: id })).then(
        (res) => {
          if (res.ok) {
            endpointNames.set(k, res.data.name);
            setVersion((v) => v + 1);
          } else endpointNames.delete(k);
        },
      );
    }
  }, [mesh, key, connected]);
  const names = new Map<string, string>();
  for (const id of ids) {
    const name = endpointNames.get(`${mesh}/${id}`);
    if (name) names.set(id, name);
  }
  return names;
}

/**
 * An audit entry in words: "bob added service tcp/ssh → 10.0.0.5:22", or
 * "mallory tried to read the audit log" when it was refused.
 */
export function auditWords(a: AuditEntry): string {
  const parts = a.path.split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const detail = a.detail ?? "";
  const ok = a.outcome === "ok";
  const say = (done: string, tried: string, rest: string) =>
    `${a.user} ${ok ? done : `tried to ${tried}`} ${rest}`.trimEnd();
  const [kind] = parts;
  if (kind === "services" && parts.length === 3) {
    const svc = `service ${parts[1]}/${parts[2]}`;
    if (a.method === "POST") return say("added", "add", `${svc}${detail ? ` → ${detail}` : ""}`);
    if (a.method === "DELETE") {
      return say("deleted", "delete", `${svc}${detail ? ` (it led to ${detail})` : ""}`);
    }
  }
  if (kind === "ports" && parts.length === 4) {
    const addr = hostPort(parts[1], parts[3]);
    if (a.method === "POST") {
      return say("mapped", "map", `port ${addr}${detail ? ` → ${detail}` : ""}`);
    }
    if (a.method === "DELETE") {
      return say(
        "deleted",
        "delete",
        `the port mapping on ${addr}${detail ? ` (→ ${detail})` : ""}`,
      );
    }
  }
  if (kind === "policy" && a.method === "PUT") {
    return say("changed", "change", "the policy for remote management");
  }
  if (a.method === "GET") {
    const what = kind === "log"
      ? "the audit log"
      : kind === "ports"
      ? "the port mappings"
      : kind === "services"
      ? "the services"
      : a.path;
    return say("read", "read", what);
  }
  return say("did", "do", `${a.method} ${a.path}`);
}

/** The audit log entries of one page, newest first. */
export function AuditTable(props: { mesh: string; entries: AuditEntry[]; connected: boolean }) {
  const remote = props.entries.map((a) => a.via).filter((v) => v !== "local");
  const names = useEndpointNames(props.mesh, remote, props.connected);
  if (props.entries.length === 0) return <p class="empty">Nothing changed yet.</p>;
  return (
    <ListTable columns={["When", "What", "From", "Outcome"]}>
      {props.entries.map((a) => (
        <tr key={a.id} data-audit={a.id}>
          <td data-label="When">
            <Time iso={a.time} />
          </td>
          <td data-label="What">{auditWords(a)}</td>
          <td data-label="From">
            {a.via === "local" ? "this machine" : (
              <span title={`endpoint id ${a.via}`}>
                {names.get(a.via) ?? <code>{a.via}</code>}
              </span>
            )}
          </td>
          <td data-label="Outcome" class={a.outcome === "ok" ? "" : "error-text"}>
            {a.outcome === "ok"
              ? "done"
              : `${a.status === 403 ? "refused" : "failed"} (${a.status}): ${a.outcome}`}
          </td>
        </tr>
      ))}
    </ListTable>
  );
}

function hostPort(host: string, port: string): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
