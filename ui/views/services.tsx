/** @jsxImportSource preact */
/**
 * Services of a mesh, one row per service and user, with their providers and
 * whether each is online; from any row, "Map a local port" opens a port on
 * this endpoint that leads to the service, in one step.
 */
import { useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { query } from "../api_client.ts";
import type { MeshService, Page } from "../api_types.ts";
import { CopyButton, ErrorBox, Notice, OnlineBadge, Pager, WarningBox } from "../components.tsx";
import { usePoll } from "../poll.ts";
import { hrefOf, navigate } from "../route.ts";
import {
  MAPPING_SENTENCE,
  mapPort,
  mayUse,
  portProblem,
  providersText,
  refusal,
  SERVICE_SENTENCE,
} from "./endpoint.tsx";
import { SearchBox } from "./endpoints.tsx";

/** Rows per page of the services list. */
export const SERVICES_PAGE_SIZE = 50;

/** The services screen; `self` is this endpoint's id in the mesh. */
export function ServicesView(
  props: {
    mesh: string;
    q: string;
    page: number;
    self: string;
    /** The user this agent acts as in the mesh. */
    myUser: string;
    connected: boolean;
  },
) {
  const { mesh, q, page } = props;
  const path = agentPath(AGENT_PATHS.meshServices, { mesh }) +
    query({ offset: (page - 1) * SERVICES_PAGE_SIZE, limit: SERVICES_PAGE_SIZE, q });
  // The hub answers lists; while the link is down the banner above says why.
  const list = usePoll<Page<MeshService>>(
    props.connected ? path : null,
    undefined,
    true,
  );
  const go = (next: { q?: string; page?: number }) =>
    navigate({ view: "services", mesh, q: next.q ?? q, page: next.page ?? page }, true);
  const data = list.data;
  return (
    <>
      <h1>Services of {mesh}</h1>
      <section class="card" aria-label="Services">
        <p class="explain">
          {SERVICE_SENTENCE} {MAPPING_SENTENCE}
        </p>
        <SearchBox
          id="services-search"
          label="Search services"
          placeholder="service name"
          value={q}
          onSearch={(text) => go({ q: text, page: 1 })}
        />
        <ErrorBox message={list.error} />
        {data && data.items.length === 0 && (
          <p class="empty">
            {q ? `No service matches "${q}".` : "No services yet. Add one on an endpoint's page."}
          </p>
        )}
        {data && data.items.length > 0 && (
          <ul class="services">
            {data.items.map((s) => (
              <ServiceRow
                key={`${s.user}/${s.proto}/${s.name}`}
                mesh={mesh}
                s={s}
                self={props.self}
                myUser={props.myUser}
                shared={data.items.some((o) =>
                  o !== s && o.proto === s.proto && o.name.toLowerCase() === s.name.toLowerCase()
                )}
              />
            ))}
          </ul>
        )}
        {data && data.total > 0 && (
          <Pager
            what="Service"
            offset={data.offset}
            size={SERVICES_PAGE_SIZE}
            total={data.total}
            onPage={(p) => go({ page: p })}
          />
        )}
        {list.loading && !data && <p class="muted">Loading…</p>}
      </section>
    </>
  );
}

/**
 * The service's name through the agent's proxy (README "Reach everything by
 * name"): `NAME.mesh`, or `NAME.USER.user.mesh` when another user offers the
 * same name; null for a name the grammar cannot carry (a dot in it).
 */
export function proxyName(s: MeshService, shared: boolean): string | null {
  const label = /^[A-Za-z0-9_-]{1,63}$/;
  if (s.proto !== "tcp" || !label.test(s.name)) return null;
  if (!shared) return `${s.name}.mesh`;
  return label.test(s.user) ? `${s.name}.${s.user}.user.mesh` : null;
}

function ServiceRow(
  props: { mesh: string; s: MeshService; self: string; myUser: string; shared: boolean },
) {
  const { mesh, s } = props;
  const byName = proxyName(s, props.shared);
  const usable = mayUse(s, props.myUser);
  const [warning, setWarning] = useState<string>();
  const [open, setOpen] = useState(false);
  const [port, setPort] = useState("");
  const [error, setError] = useState<string>();
  const [done, setDone] = useState<string>();
  const id = `map-${s.user}-${s.proto}-${s.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const anyOnline = s.providers.some((p) => p.online);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setDone(undefined);
    setWarning(undefined);
    const bad = portProblem(port, "Local port");
    if (bad) return setError(bad);
    const res = await mapPort(mesh, props.self, "127.0.0.1", port, s.name, s.user);
    if (!res.ok) return setError(refusal(res));
    setDone(`127.0.0.1:${res.data.port} on this endpoint now leads to ${s.proto}/${s.name}`);
    if (res.data.warning) setWarning(`It cannot work yet: ${res.data.warning}.`);
    setPort("");
  };
  return (
    <li class="service" data-service={s.name}>
      <div class="service-head">
        <div>
          <strong>{s.proto}/{s.name}</strong> <span class="muted">of {s.user}</span>
        </div>
        <span class="badges">
          <OnlineBadge online={anyOnline} onText="available" offText="no provider online" />
          {!usable && <span class="badge off">not open to {props.myUser}</span>}
        </span>
      </div>
      <div class="providers">
        {providersText(s)}: provided by {s.providers.map((p, i) => (
          <span key={p.endpoint}>
            {i > 0 && ", "}
            <a href={hrefOf({ view: "endpoint", mesh, ep: p.endpoint, page: 1 })}>{p.name}</a>{" "}
            <span
              class={p.online ? "dot on" : "dot off"}
              aria-label={p.online ? "online" : "offline"}
              role="img"
            />
          </span>
        ))}
      </div>
      {!usable && (
        <p class="muted not-usable">
          Only {s.user}, root{openTo(s)} may use it; ask {s.user} to add {props.myUser}.
        </p>
      )}
      {usable && byName && (
        <p class="muted proxy-name">
          By name through this agent's proxy: <code>{byName}</code>{" "}
          <CopyButton text={byName} what="name" />
        </p>
      )}
      {usable && !open && (
        <button
          type="button"
          class="secondary small"
          onClick={() => setOpen(true)}
        >
          Map a local port to this
        </button>
      )}
      {usable && open && (
        <form
          class="map-form"
          noValidate
          onSubmit={submit}
          aria-label={`Map a local port to ${s.name}`}
        >
          <label for={id}>Local port on 127.0.0.1</label>
          <input
            id={id}
            inputMode="numeric"
            placeholder="e.g. 2222"
            value={port}
            autocomplete="off"
            onInput={(e) => setPort(e.currentTarget.value)}
          />
          <button type="submit">Map port</button>
          <button
            type="button"
            class="secondary"
            onClick={() => setOpen(false)}
          >
            Close
          </button>
          <ErrorBox message={error} />
          <Notice message={done} />
          <WarningBox message={warning} />
        </form>
      )}
    </li>
  );
}

/** The users a service is open to besides its user and root, as ", a, b" ("" when none). */
function openTo(s: MeshService): string {
  const users = [...new Set(s.providers.flatMap((p) => p.users))].filter((u) => u !== "*");
  return users.length ? `, ${users.join(", ")}` : "";
}
