/** @jsxImportSource preact */
/**
 * Endpoints of a mesh: one page at a time from the hub (search and paging are
 * server-side), refreshed every few seconds so an endpoint that goes offline
 * shows as offline without a reload.
 */
import { useEffect, useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { query } from "../api_client.ts";
import type { EndpointRecord, Page } from "../api_types.ts";
import { ErrorBox, ListTable, OnlineBadge, Pager, Time } from "../components.tsx";
import { usePoll } from "../poll.ts";
import { hrefOf, navigate } from "../route.ts";

/** Rows per page of the endpoints list. */
export const ENDPOINTS_PAGE_SIZE = 50;

/** The endpoints screen. */
export function EndpointsView(
  props: { mesh: string; q: string; page: number; self?: string; connected: boolean },
) {
  const { mesh, q, page } = props;
  const path = agentPath(AGENT_PATHS.endpoints, { mesh }) +
    query({ offset: (page - 1) * ENDPOINTS_PAGE_SIZE, limit: ENDPOINTS_PAGE_SIZE, q });
  // The hub answers lists; while the link is down the banner above says why.
  const list = usePoll<Page<EndpointRecord>>(props.connected ? path : null, undefined, true);
  const go = (next: { q?: string; page?: number }) =>
    navigate({ view: "endpoints", mesh, q: next.q ?? q, page: next.page ?? page }, true);
  const data = list.data;
  return (
    <>
      <h1>Endpoints of {mesh}</h1>
      <section class="card" aria-label="Endpoints">
        <SearchBox
          id="endpoints-search"
          label="Search endpoints"
          placeholder="name, user or id"
          value={q}
          onSearch={(text) => go({ q: text, page: 1 })}
        />
        <ErrorBox message={list.error} />
        {data && data.items.length === 0 && (
          <p class="empty">{q ? `No endpoint matches "${q}".` : "No endpoints yet."}</p>
        )}
        {data && data.items.length > 0 && (
          <ListTable columns={["Endpoint", "State", "User", "Version", "Services", "State since"]}>
            {data.items.map((e) => (
              <tr key={e.id} data-endpoint={e.name}>
                <td data-label="Endpoint">
                  <a href={hrefOf({ view: "endpoint", mesh, ep: e.id, page: 1 })}>{e.name}</a>
                  {e.id === props.self && <span class="muted aside">(this one)</span>}
                </td>
                <td data-label="State">
                  <OnlineBadge online={e.online} />
                </td>
                <td data-label="User">{e.user}</td>
                <td data-label="Version">{e.version}</td>
                <td data-label="Services">{e.services.length}</td>
                <td data-label="State since">
                  <Time iso={e.since} />
                </td>
              </tr>
            ))}
          </ListTable>
        )}
        {data && data.total > 0 && (
          <Pager
            what="Endpoint"
            offset={data.offset}
            size={ENDPOINTS_PAGE_SIZE}
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
 * A search field that applies what was typed after a short pause (or at
 * Enter), so each keystroke does not become a request.
 */
export function SearchBox(
  props: {
    id: string;
    label: string;
    placeholder: string;
    value: string;
    onSearch: (q: string) => void;
  },
) {
  const [text, setText] = useState(props.value);
  useEffect(() => setText(props.value), [props.value]);
  useEffect(() => {
    if (text === props.value) return;
    const timer = setTimeout(() => props.onSearch(text.trim()), 300);
    return () => clearTimeout(timer);
  }, [text]);
  return (
    <form
      class="search"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSearch(text.trim());
      }}
    >
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type="search"
        value={text}
        placeholder={props.placeholder}
        autocomplete="off"
        onInput={(e) => setText(e.currentTarget.value)}
      />
    </form>
  );
}
