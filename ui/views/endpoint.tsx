/** @jsxImportSource preact */
/**
 * One endpoint — this one or any other in the mesh: its services, port
 * mappings and audit log, with forms that create and delete them on that
 * endpoint. For another endpoint the agent signs the request and the target
 * decides; its refusal (403 and why) is shown next to the form that asked.
 */
import { useState } from "preact/hooks";
import { callApi, meshPath, query } from "../api_client.ts";
import type { AuditEntry, EndpointRecord, LocalService, Page, PortMapping } from "../api_types.ts";
import { ErrorBox, ListTable, OnlineBadge, Pager, Section, Time } from "../components.tsx";
import { FieldGrid, type FieldSpec, useFormState } from "../form.tsx";
import { usePoll } from "../poll.ts";
import { navigate } from "../route.ts";

/** Rows per page of the audit log. */
export const LOG_PAGE_SIZE = 20;

/** The endpoint screen. */
export function EndpointView(
  props: {
    mesh: string;
    ep: string;
    page: number;
    self?: string;
    selfName?: string;
    connected: boolean;
  },
) {
  const { mesh, ep } = props;
  // The hub's record needs the hub link; this endpoint's own lists do not, another's do.
  const local = ep === props.self;
  const ifReachable = (path: string, needsHub: boolean) =>
    props.connected || !needsHub ? path : null;
  const record = usePoll<EndpointRecord>(ifReachable(meshPath(mesh, "endpoints", ep), true));
  const services = usePoll<LocalService[]>(
    ifReachable(meshPath(mesh, "endpoints", ep, "services"), !local),
  );
  const ports = usePoll<PortMapping[]>(
    ifReachable(meshPath(mesh, "endpoints", ep, "ports"), !local),
  );
  const log = usePoll<Page<AuditEntry>>(
    ifReachable(
      meshPath(mesh, "endpoints", ep, "log") +
        query({ offset: (props.page - 1) * LOG_PAGE_SIZE, limit: LOG_PAGE_SIZE }),
      !local,
    ),
    undefined,
    true,
  );
  const e = record.data;
  const isSelf = e ? e.id === props.self : local;
  const changed = () => {
    services.reload();
    ports.reload();
    log.reload();
  };
  return (
    <>
      <h1>
        Endpoint {e?.name ?? (local ? props.selfName : ep)}
        {isSelf && <span class="muted aside">(this one)</span>}
      </h1>
      <ErrorBox message={record.error} />
      {e && (
        <section class="card" aria-label="Endpoint details">
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <OnlineBadge online={e.online} /> since <Time iso={e.since} />
            </dd>
            <dt>User</dt>
            <dd>{e.user}</dd>
            <dt>Id</dt>
            <dd>
              <code>{e.id}</code>
            </dd>
            <dt>Version</dt>
            <dd>{e.version}</dd>
            <dt>Address seen by the hub</dt>
            <dd>{e.address || "—"}</dd>
          </dl>
          {!isSelf && (
            <p class="muted">
              Changes here are signed by this agent and carried by the hub to{" "}
              {e.name}, which applies them only if its user or root asks and its local policy
              allows.
            </p>
          )}
        </section>
      )}
      <Section title="Services" id="services">
        <ErrorBox message={services.error} />
        {services.loading && <p class="muted">Loading…</p>}
        {services.data && (
          <ServiceTable mesh={mesh} ep={ep} services={services.data} onChange={changed} />
        )}
        <ServiceForm mesh={mesh} ep={ep} onChange={changed} />
      </Section>
      <Section title="Port mappings" id="ports">
        <ErrorBox message={ports.error} />
        {ports.loading && <p class="muted">Loading…</p>}
        {ports.data && <PortTable mesh={mesh} ep={ep} ports={ports.data} onChange={changed} />}
        <PortForm mesh={mesh} ep={ep} onChange={changed} />
      </Section>
      <Section title="Audit log" id="log">
        <ErrorBox message={log.error} />
        {log.loading && !log.data && <p class="muted">Loading…</p>}
        {log.data && <AuditTable entries={log.data.items} />}
        {log.data && log.data.total > 0 && (
          <Pager
            what="Audit log"
            offset={log.data.offset}
            size={LOG_PAGE_SIZE}
            total={log.data.total}
            onPage={(page) => navigate({ view: "endpoint", mesh, ep, page }, true)}
          />
        )}
      </Section>
    </>
  );
}

/** A delete button that shows the refusal next to it. */
function DeleteButton(props: { label: string; path: string; onDone: () => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <>
      <button
        type="button"
        class="danger secondary small"
        aria-label={props.label}
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          const res = await callApi("DELETE", props.path);
          setBusy(false);
          if (res.ok) props.onDone();
          else setError(refusal(res));
        }}
      >
        Delete
      </button>
      <ErrorBox message={error} />
    </>
  );
}

function ServiceTable(
  props: { mesh: string; ep: string; services: LocalService[]; onChange: () => void },
) {
  if (props.services.length === 0) return <p class="empty">No services.</p>;
  return (
    <ListTable columns={["Service", "Target", "Open to"]} actions>
      {props.services.map((s) => (
        <tr key={`${s.proto}/${s.name}`} data-service={s.name}>
          <td data-label="Service">
            {s.proto}/{s.name}
          </td>
          <td data-label="Target">
            <code>{s.host}:{s.port}</code>
          </td>
          <td data-label="Open to">{usersText(s.users)}</td>
          <td class="row-actions">
            <DeleteButton
              label={`Delete service ${s.proto}/${s.name}`}
              path={meshPath(props.mesh, "endpoints", props.ep, "services", s.proto, s.name)}
              onDone={props.onChange}
            />
          </td>
        </tr>
      ))}
    </ListTable>
  );
}

function usersText(users: string[]): string {
  if (users.includes("*")) return "every member";
  return users.length ? `its user, root, ${users.join(", ")}` : "its user and root";
}

const SERVICE_FIELDS: FieldSpec[] = [
  { key: "name", label: "Name", placeholder: "ssh" },
  { key: "host", label: "Target host", hint: "reachable from that endpoint" },
  { key: "port", label: "Target port", placeholder: "22", numeric: true },
  { key: "users", label: "Also open to", hint: "users, comma-separated; * for all" },
];

function ServiceForm(props: { mesh: string; ep: string; onChange: () => void }) {
  const form = useFormState({ name: "", host: "127.0.0.1", port: "", users: "" });
  const submit = async (e: Event) => {
    e.preventDefault();
    const { name, host, port, users } = form.values;
    form.start();
    if (!name.trim()) return form.fail("Give the service a name");
    const res = await callApi(
      "POST",
      meshPath(props.mesh, "endpoints", props.ep, "services", "tcp", name.trim()),
      { host: host.trim(), port: Number(port), users: users.split(/[\s,]+/).filter(Boolean) },
    );
    if (!res.ok) return form.fail(refusal(res));
    form.succeed(`Service tcp/${name.trim()} now points at ${host.trim()}:${port}`, {
      name: "",
      port: "",
    });
    props.onChange();
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="Add a service">
      <h3>Add a service</h3>
      <FieldGrid idPrefix="svc" fields={SERVICE_FIELDS} form={form} />
      <button type="submit">Add service</button>
    </form>
  );
}

function PortTable(
  props: { mesh: string; ep: string; ports: PortMapping[]; onChange: () => void },
) {
  if (props.ports.length === 0) return <p class="empty">No port mappings.</p>;
  return (
    <ListTable columns={["Listens on", "Goes to service"]} actions>
      {props.ports.map((p) => (
        <tr key={`${p.ip}/${p.port}`} data-port={p.port}>
          <td data-label="Listens on">
            <code>{p.ip.includes(":") ? `[${p.ip}]` : p.ip}:{p.port}</code>
          </td>
          <td data-label="Goes to">
            {p.proto}/{p.target.service}
            {p.target.user && <span class="muted">&nbsp;of {p.target.user}</span>}
            {p.target.endpoint && <span class="muted">&nbsp;on {p.target.endpoint}</span>}
          </td>
          <td class="row-actions">
            <DeleteButton
              label={`Delete port mapping ${p.ip}:${p.port}`}
              path={meshPath(
                props.mesh,
                "endpoints",
                props.ep,
                "ports",
                p.ip,
                p.proto,
                String(p.port),
              )}
              onDone={props.onChange}
            />
          </td>
        </tr>
      ))}
    </ListTable>
  );
}

const PORT_FIELDS: FieldSpec[] = [
  { key: "ip", label: "Listen address" },
  { key: "port", label: "Port", placeholder: "2222", numeric: true },
  { key: "service", label: "Service", placeholder: "ssh" },
  { key: "user", label: "Service's user", hint: "optional: whose service of that name" },
];

function PortForm(props: { mesh: string; ep: string; onChange: () => void }) {
  const form = useFormState({ ip: "127.0.0.1", port: "", service: "", user: "" });
  const submit = async (e: Event) => {
    e.preventDefault();
    const { ip, port, service, user } = form.values;
    form.start();
    const res = await mapPort(props.mesh, props.ep, ip, port, service, user);
    if (!res.ok) return form.fail(refusal(res));
    form.succeed(`${ip.trim()}:${port} now leads to tcp/${service.trim()}`, { port: "" });
    props.onChange();
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="Add a port mapping">
      <h3>Add a port mapping</h3>
      <FieldGrid idPrefix="port" fields={PORT_FIELDS} form={form} />
      <button type="submit">Add port mapping</button>
    </form>
  );
}

/** Maps `ip:port` on endpoint `ep` to the mesh service `tcp/service` (of `user`, if given). */
export function mapPort(
  mesh: string,
  ep: string,
  ip: string,
  port: string,
  service: string,
  user: string,
) {
  const target: { service: string; user?: string } = { service: service.trim() };
  if (user.trim()) target.user = user.trim();
  return callApi<PortMapping>(
    "POST",
    meshPath(mesh, "endpoints", ep, "ports", ip.trim() || "127.0.0.1", "tcp", port.trim() || "0"),
    { target },
  );
}

/** A refusal as the user should read it: 403s say that the endpoint refused. */
export function refusal(res: { status: number; message: string }): string {
  return res.status === 403 ? `Refused (403): ${res.message}` : res.message;
}

function AuditTable(props: { entries: AuditEntry[] }) {
  if (props.entries.length === 0) return <p class="empty">Nothing changed yet.</p>;
  return (
    <ListTable columns={["When", "Who", "From", "What", "Outcome"]}>
      {props.entries.map((a) => (
        <tr key={a.id}>
          <td data-label="When">
            <Time iso={a.time} />
          </td>
          <td data-label="Who">{a.user}</td>
          <td data-label="From">{a.via === "local" ? "this machine" : <code>{a.via}</code>}</td>
          <td data-label="What">
            {a.method} {a.path}
          </td>
          <td data-label="Outcome" class={a.outcome === "ok" ? "" : "error-text"}>
            {a.status} {a.outcome}
          </td>
        </tr>
      ))}
    </ListTable>
  );
}
