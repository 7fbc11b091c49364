/** @jsxImportSource preact */
/**
 * One endpoint — this one or any other in the mesh: its services and port
 * mappings with their live state, and its audit log (`audit_log.tsx`), with forms
 * that create and delete them on that endpoint. For another endpoint the
 * agent signs the request and the target decides; its refusal (403 and why)
 * is shown once. Endpoints this user may not manage (another user's, unless
 * this user is root) show why instead of forms that could only be refused.
 */
import { useState } from "preact/hooks";
import { bytesText } from "@ztm/shared/bytes_text";
import { AGENT_PATHS, agentPath, ENDPOINT_PATHS, endpointPath } from "@ztm/shared/agent_paths";
import { callApi, query } from "../api_client.ts";
import type {
  AuditEntry,
  EndpointRecord,
  LocalService,
  MeshService,
  Page,
  PortMapping,
  TunnelHealth,
  TunnelState,
} from "../api_types.ts";
import {
  ConfirmButton,
  CopyButton,
  ErrorBox,
  Field,
  ListTable,
  Notice,
  OnlineBadge,
  Pager,
  Section,
  Time,
  WarningBox,
} from "../components.tsx";
import { FieldGrid, type FieldSpec, useFormState } from "../form.tsx";
import { usePoll } from "../poll.ts";
import { hrefOf, navigate } from "../route.ts";
import { type Rate, Sparkline, useRates } from "../sparkline.tsx";
import { AuditTable } from "./audit_log.tsx";

/** Rows per page of the audit log. */
export const LOG_PAGE_SIZE = 20;

/** What a service is, in one sentence (shown on every screen that lists them). */
export const SERVICE_SENTENCE =
  "A service offers a host:port that its endpoint can reach (an SSH server, a web app) to other members of the mesh, under a name such as tcp/ssh.";
/** What a port mapping is, in one sentence. */
export const MAPPING_SENTENCE =
  "A port mapping opens a port on an endpoint; every connection to it is carried through the mesh to a service on another endpoint.";

/** The endpoint screen. */
export function EndpointView(
  props: {
    mesh: string;
    ep: string;
    page: number;
    self?: string;
    selfName?: string;
    /** The user this agent acts as in the mesh. */
    myUser: string;
    connected: boolean;
  },
) {
  const { mesh, ep } = props;
  const local = ep === props.self;
  // The hub's record needs the hub link; this endpoint's own lists do not, another's do.
  const record = usePoll<EndpointRecord>(
    props.connected ? agentPath(AGENT_PATHS.endpoint, { mesh, ep }) : null,
  );
  const e = record.data;
  const isSelf = e ? e.id === props.self : local;
  const epUser = isSelf ? props.myUser : e?.user;
  const mayManage = isSelf || props.myUser === "root" || epUser === props.myUser;
  const listPath = (rest: string) =>
    isSelf || (props.connected && e && mayManage) ? endpointPath(mesh, ep, rest) : null;
  const services = usePoll<LocalService[]>(listPath(ENDPOINT_PATHS.services));
  const ports = usePoll<PortMapping[]>(listPath(ENDPOINT_PATHS.ports));
  const serviceRates = useRates(services.data, serviceKey);
  const portRates = useRates(ports.data, portKey);
  const logPath = listPath(ENDPOINT_PATHS.log);
  const log = usePoll<Page<AuditEntry>>(
    logPath &&
      logPath + query({ offset: (props.page - 1) * LOG_PAGE_SIZE, limit: LOG_PAGE_SIZE }),
    undefined,
    true,
  );
  const changed = () => {
    services.reload();
    ports.reload();
    log.reload();
  };
  const name = e?.name ?? (local ? props.selfName : ep);
  // One refusal for the three lists (e.g. remote management switched off there), shown once.
  const denied = [services, ports, log].find((p) => p.status === 403);
  const showLists = (isSelf || (e !== undefined && mayManage)) && !denied;
  return (
    <>
      <h1>
        Endpoint {name}
        {isSelf && <span class="muted aside">(this one)</span>}
      </h1>
      <ErrorBox message={record.error} />
      {e && <EndpointFacts e={e} isSelf={isSelf} />}
      {e && !mayManage && <NotYours mesh={mesh} e={e} myUser={props.myUser} />}
      {denied && (
        <section class="card" aria-label="Not manageable">
          <ErrorBox
            title={`${name ?? "This endpoint"} refuses`}
            message={`${denied.error}. Its services, port mappings and audit log are not shown.`}
          />
        </section>
      )}
      {showLists && (
        <>
          <Section title="Services" id="services">
            <p class="explain">{SERVICE_SENTENCE}</p>
            <ErrorBox message={services.error} />
            {services.loading && <p class="muted">Loading…</p>}
            {services.data && (
              <ServiceTable
                mesh={mesh}
                ep={ep}
                services={services.data}
                rates={serviceRates}
                onChange={changed}
              />
            )}
            <ServiceForm mesh={mesh} ep={ep} onChange={changed} />
          </Section>
          <Section title="Port mappings" id="ports">
            <p class="explain">{MAPPING_SENTENCE}</p>
            <ErrorBox message={ports.error} />
            {ports.loading && <p class="muted">Loading…</p>}
            {ports.data && (
              <PortTable
                mesh={mesh}
                ep={ep}
                ports={ports.data}
                rates={portRates}
                onChange={changed}
              />
            )}
            <PortForm
              mesh={mesh}
              ep={ep}
              epUser={epUser}
              connected={props.connected}
              onChange={changed}
            />
          </Section>
          <Section title="Audit log" id="log">
            <ErrorBox message={log.error} />
            {log.loading && !log.data && <p class="muted">Loading…</p>}
            {log.data && (
              <AuditTable mesh={mesh} entries={log.data.items} connected={props.connected} />
            )}
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
      )}
    </>
  );
}

function EndpointFacts(props: { e: EndpointRecord; isSelf: boolean }) {
  const { e } = props;
  return (
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
          <code>{e.id}</code> <CopyButton text={e.id} what="endpoint id" />
        </dd>
        <dt>Version</dt>
        <dd>{e.version}</dd>
        <dt>Address seen by the hub</dt>
        <dd>
          {e.address || "—"} {e.address && <CopyButton text={e.address} what="address" />}
        </dd>
      </dl>
      {!props.isSelf && (
        <p class="muted">
          Changes here are signed by this agent and carried by the hub to{" "}
          {e.name}, which applies them only if its user or root asks and its local policy allows.
        </p>
      )}
    </section>
  );
}

/** Why another user's endpoint shows no lists or forms, and what it offers to the mesh. */
function NotYours(props: { mesh: string; e: EndpointRecord; myUser: string }) {
  const { e } = props;
  return (
    <section class="card" aria-label="Not yours to manage">
      <p class="info" data-testid="not-yours">
        This agent acts as <strong>{props.myUser}</strong>. Only <strong>{e.user}</strong>{" "}
        (this endpoint's user) and root may see or change its services, port mappings and audit log,
        so there is nothing to change here.
      </p>
      {e.services.length > 0 && (
        <p>
          It offers {e.services.map((s, i) => (
            <span key={s.name}>
              {i > 0 && ", "}
              <strong>{s.proto}/{s.name}</strong>
            </span>
          ))}; map a local port to one on the{" "}
          <a href={hrefOf({ view: "services", mesh: props.mesh, q: "", page: 1 })}>Services</a>{" "}
          screen.
        </p>
      )}
    </section>
  );
}

/** A delete button that asks first. */
function DeleteButton(
  props: { label: string; question: string; path: string; onDone: () => void },
) {
  return (
    <ConfirmButton
      label={props.label}
      text="Delete"
      question={props.question}
      yes="Yes, delete"
      run={async () => {
        const res = await callApi("DELETE", props.path);
        if (!res.ok) return refusal(res);
        props.onDone();
      }}
    />
  );
}

const HEALTH_WORDS: Record<TunnelHealth, string> = {
  ok: "ok",
  unknown_service: "nobody offers it",
  no_provider_online: "no provider online",
  not_allowed: "not allowed",
  target_refusing: "target refusing",
  failing: "failing",
};

/** A mapping's or service's live state: a badge, what is wrong, and the last error with its time. */
function StateCell(props: { state?: TunnelState }) {
  const s = props.state;
  if (!s) return <span class="muted">—</span>;
  const ok = s.health === "ok";
  return (
    <div class="state" data-health={s.health}>
      <span class={ok ? "badge on" : "badge off"}>{HEALTH_WORDS[s.health]}</span>
      {!ok && <div class="state-message">{s.message}</div>}
      {s.lastError && (
        <div class="muted last-error">
          Last error <Time iso={s.lastError.time} />
          {ok || s.lastError.message !== s.message ? `: ${s.lastError.message}` : ""}
        </div>
      )}
    </div>
  );
}

/** Open connections, bytes each way, and the last minute's rates as a sparkline. */
function TrafficCell(props: { state?: TunnelState; rates?: Rate[]; label: string }) {
  const s = props.state;
  if (!s) return <span class="muted">—</span>;
  return (
    <span class="traffic">
      <span class="traffic-open">{s.open} open</span>, {s.connections} in all
      <br />
      <span class="traffic-bytes">
        {bytesText(s.bytesUp)} up, {bytesText(s.bytesDown)} down
      </span>
      <br />
      <Sparkline rates={props.rates} label={`Traffic of ${props.label}`} />
    </span>
  );
}

/** A service's key in the rate history. */
function serviceKey(s: LocalService): string {
  return `${s.proto}/${s.name}`;
}

/** A mapping's key in the rate history. */
function portKey(p: PortMapping): string {
  return `${p.ip}/${p.proto}/${p.port}`;
}

function ServiceTable(
  props: {
    mesh: string;
    ep: string;
    services: LocalService[];
    rates: Map<string, Rate[]>;
    onChange: () => void;
  },
) {
  if (props.services.length === 0) return <p class="empty">No services.</p>;
  return (
    <ListTable columns={["Service", "Target", "Open to", "State", "Connections"]} actions>
      {props.services.map((s) => {
        const target = formatAddr(s.host, s.port);
        return (
          <tr key={`${s.proto}/${s.name}`} data-service={s.name}>
            <td data-label="Service">
              {s.proto}/{s.name}
            </td>
            <td data-label="Target">
              <code>{target}</code> <CopyButton text={target} what={`target of ${s.name}`} />
            </td>
            <td data-label="Open to">{usersText(s.users)}</td>
            <td data-label="State">
              <StateCell state={s.state} />
            </td>
            <td data-label="Connections">
              <TrafficCell
                state={s.state}
                rates={props.rates.get(serviceKey(s))}
                label={`${s.proto}/${s.name}`}
              />
            </td>
            <td class="row-actions">
              <DeleteButton
                label={`Delete service ${s.proto}/${s.name}`}
                question={`Delete service ${s.proto}/${s.name}? Nobody can reach ${target} through it any more; connections open now stay until they end.`}
                path={endpointPath(props.mesh, props.ep, ENDPOINT_PATHS.service, s)}
                onDone={props.onChange}
              />
            </td>
          </tr>
        );
      })}
    </ListTable>
  );
}

function usersText(users: string[]): string {
  if (users.includes("*")) return "every member";
  return users.length ? `its user, root, ${users.join(", ")}` : "its user and root";
}

function formatAddr(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** `tcp/ssh`, `udp/dns` or `ssh` → `ssh`, `dns`; other text unchanged. */
export function serviceName(text: string): string {
  return text.trim().replace(/^(tcp|udp)\//i, "");
}

/** The protocol a typed service name asks for: `udp/…` is udp, anything else tcp. */
export function serviceProto(text: string): "tcp" | "udp" {
  return /^udp\//i.test(text.trim()) ? "udp" : "tcp";
}

/** Why a port field cannot be sent, or undefined when it is a port number. */
export function portProblem(text: string, what = "Port"): string | undefined {
  const t = text.trim();
  if (!t) return `${what} is required`;
  if (!/^\d{1,5}$/.test(t) || Number(t) < 1 || Number(t) > 65535) {
    return `${what} "${t}" is not a number from 1 to 65535`;
  }
  return undefined;
}

const SERVICE_FIELDS: FieldSpec[] = [
  { key: "name", label: "Name", placeholder: "tcp/ssh", hint: "tcp/ssh (or just ssh), udp/dns" },
  { key: "host", label: "Target host", hint: "reachable from that endpoint" },
  { key: "port", label: "Target port", placeholder: "22", numeric: true },
  { key: "users", label: "Also open to", hint: "users, comma-separated; * for all" },
];

function ServiceForm(props: { mesh: string; ep: string; onChange: () => void }) {
  const form = useFormState({ name: "", host: "127.0.0.1", port: "", users: "" });
  const submit = async (e: Event) => {
    e.preventDefault();
    const { host, port, users } = form.values;
    const name = serviceName(form.values.name);
    const proto = serviceProto(form.values.name);
    form.start();
    if (!name) return form.fail("Give the service a name, e.g. tcp/ssh");
    const bad = portProblem(port, "Target port");
    if (bad) return form.fail(bad);
    const res = await callApi(
      "POST",
      endpointPath(props.mesh, props.ep, ENDPOINT_PATHS.service, { proto, name }),
      {
        host: host.trim(),
        port: Number(port.trim()),
        users: users.split(/[\s,]+/).filter(Boolean),
      },
    );
    if (!res.ok) return form.fail(refusal(res));
    form.succeed(`Service ${proto}/${name} now points at ${host.trim()}:${port.trim()}`, {
      name: "",
      port: "",
    });
    props.onChange();
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="Add a service" noValidate>
      <h3>Add a service</h3>
      <FieldGrid idPrefix="svc" fields={SERVICE_FIELDS} form={form} />
      <button type="submit">Add service</button>
    </form>
  );
}

function PortTable(
  props: {
    mesh: string;
    ep: string;
    ports: PortMapping[];
    rates: Map<string, Rate[]>;
    onChange: () => void;
  },
) {
  if (props.ports.length === 0) return <p class="empty">No port mappings.</p>;
  return (
    <ListTable columns={["Listens on", "Goes to service", "State", "Connections"]} actions>
      {props.ports.map((p) => {
        const listen = formatAddr(p.ip, p.port);
        return (
          <tr key={`${p.ip}/${p.port}`} data-port={p.port}>
            <td data-label="Listens on">
              <code>{listen}</code> <CopyButton text={listen} what={`address ${listen}`} />
            </td>
            <td data-label="Goes to">
              {p.proto}/{p.target.service}
              {p.target.user && <span class="muted">&nbsp;of {p.target.user}</span>}
              {p.target.endpoint && <span class="muted">&nbsp;on {p.target.endpoint}</span>}
            </td>
            <td data-label="State">
              <StateCell state={p.state} />
            </td>
            <td data-label="Connections">
              <TrafficCell
                state={p.state}
                rates={props.rates.get(portKey(p))}
                label={`port ${listen}`}
              />
            </td>
            <td class="row-actions">
              <DeleteButton
                label={`Delete port mapping ${p.ip}:${p.port}`}
                question={`Delete the port mapping on ${listen}? The port closes and its open connections end now.`}
                path={endpointPath(props.mesh, props.ep, ENDPOINT_PATHS.port, p)}
                onDone={props.onChange}
              />
            </td>
          </tr>
        );
      })}
    </ListTable>
  );
}

/** The picker's value for "a name nobody offers yet". */
const OTHER = "*other";

/** True when `user` may use service `s` from at least one of its providers. */
export function mayUse(s: MeshService, user: string): boolean {
  return s.providers.some((p) =>
    user === s.user || user === "root" || p.users.includes("*") || p.users.includes(user)
  );
}

/** "2 of 3 providers online" / "no provider online". */
export function providersText(s: MeshService): string {
  const online = s.providers.filter((p) => p.online).length;
  if (online === 0) return "no provider online";
  return `${online} of ${s.providers.length} provider${s.providers.length === 1 ? "" : "s"} online`;
}

function PortForm(
  props: {
    mesh: string;
    ep: string;
    /** The user whose connections the mapping makes (the endpoint's). */
    epUser?: string;
    connected: boolean;
    onChange: () => void;
  },
) {
  const form = useFormState({ ip: "127.0.0.1", port: "", pick: "", other: "" });
  const [warning, setWarning] = useState<string>();
  // The services this endpoint's user may use, for the picker (one page of the mesh's list).
  const offered = usePoll<Page<MeshService>>(
    props.connected
      ? agentPath(AGENT_PATHS.meshServices, { mesh: props.mesh }) + query({ limit: 500 })
      : null,
    10_000,
    true,
  );
  const usable = (offered.data?.items ?? []).filter((s) =>
    !props.epUser || mayUse(s, props.epUser)
  );
  const { ip, port, pick, other } = form.values;
  const submit = async (e: Event) => {
    e.preventDefault();
    form.start();
    setWarning(undefined);
    const bad = portProblem(port);
    if (bad) return form.fail(bad);
    let service = "", user = "";
    const proto = pick === OTHER ? serviceProto(other) : "tcp";
    if (pick === OTHER) service = serviceName(other);
    else if (pick) [user, service] = pick.split("/", 2);
    if (!service) return form.fail("Choose a service, or type the name of one");
    const res = await mapPort(props.mesh, props.ep, ip, port, service, user, proto);
    if (!res.ok) return form.fail(refusal(res));
    form.succeed(`${ip.trim()}:${port.trim()} now leads to ${proto}/${service}`, { port: "" });
    if (res.data.warning) setWarning(`It cannot work yet: ${res.data.warning}.`);
    props.onChange();
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="Add a port mapping" noValidate>
      <h3>Add a port mapping</h3>
      <div class="grid4">
        <Field
          id="port-ip"
          label="Listen address"
          value={ip}
          autocomplete="off"
          onInput={(e) => form.set("ip", e.currentTarget.value)}
        />
        <Field
          id="port-port"
          label="Port"
          placeholder="2222"
          inputMode="numeric"
          value={port}
          autocomplete="off"
          onInput={(e) => form.set("port", e.currentTarget.value)}
        />
        <div class="field">
          <label for="port-service">Service</label>
          <select
            id="port-service"
            value={pick}
            aria-describedby="port-service-hint"
            onChange={(e) => form.set("pick", e.currentTarget.value)}
          >
            <option value="">Choose a service…</option>
            {usable.map((s) => (
              <option key={`${s.user}/${s.name}`} value={`${s.user}/${s.name}`}>
                {s.proto}/{s.name} of {s.user} — {providersText(s)}
              </option>
            ))}
            <option value={OTHER}>Another name (nobody offers it yet)…</option>
          </select>
          <small id="port-service-hint">
            {props.epUser
              ? `Services ${props.epUser} may use${
                usable.length ? "" : " (none yet)"
              }, with their providers`
              : "Services of the mesh, with their providers"}
          </small>
        </div>
        {pick === OTHER && (
          <Field
            id="port-other"
            label="Service name"
            placeholder="tcp/ssh"
            hint="tcp/ssh (or just ssh); udp/dns maps a UDP port"
            value={other}
            autocomplete="off"
            onInput={(e) => form.set("other", e.currentTarget.value)}
          />
        )}
      </div>
      <ErrorBox message={form.error} />
      <Notice message={form.done} />
      <WarningBox message={warning} />
      <button type="submit">Add port mapping</button>
    </form>
  );
}

/** Maps `ip:port` on endpoint `ep` to the mesh service `proto/service` (of `user`, if given). */
export function mapPort(
  mesh: string,
  ep: string,
  ip: string,
  port: string,
  service: string,
  user: string,
  proto: "tcp" | "udp" = "tcp",
) {
  const target: { service: string; user?: string } = { service: serviceName(service) };
  if (user.trim()) target.user = user.trim();
  return callApi<PortMapping>(
    "POST",
    endpointPath(mesh, ep, ENDPOINT_PATHS.port, {
      ip: ip.trim() || "127.0.0.1",
      proto,
      port: port.trim(),
    }),
    { target },
  );
}

/** A refusal as the user should read it: 403s say that the endpoint refused. */
export function refusal(res: { status: number; message: string }): string {
  return res.status === 403 ? `Refused (403): ${res.message}` : res.message;
}
