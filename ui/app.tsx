/** @jsxImportSource preact */
/**
 * The dashboard island: header and navigation for the current mesh, a banner
 * when its hub link is down, and the screen for the current route. The
 * server renders it with the props it embeds in the page; the client
 * hydrates the same props, then follows the location hash.
 */
import { useEffect } from "preact/hooks";
import type { DashboardProps, MeshSummary } from "./api_types.ts";
import { ErrorBox } from "./components.tsx";
import { meshes, meshesError, meshesLoaded, refreshMeshes } from "./meshes.ts";
import { POLL_MS } from "./poll.ts";
import { hrefOf, navigate, type Route, route } from "./route.ts";
import { EndpointView } from "./views/endpoint.tsx";
import { EndpointsView } from "./views/endpoints.tsx";
import { InviteView } from "./views/invite.tsx";
import { JoinView } from "./views/join.tsx";
import { ServicesView } from "./views/services.tsx";
import { StatusView } from "./views/status.tsx";

/** Sets the shared state from the server's props (before the first render, on both sides). */
export function initState(props: DashboardProps): void {
  meshes.value = props.meshes ?? [];
  meshesLoaded.value = props.meshes !== undefined;
}

/** The whole dashboard. */
export function App(props: DashboardProps) {
  useEffect(() => {
    if (!meshesLoaded.value) void refreshMeshes();
    const timer = setInterval(() => {
      if (!document.hidden) void refreshMeshes();
    }, POLL_MS);
    return () => clearInterval(timer);
  }, []);
  const r = route.value;
  const list = meshes.value;
  const current = ("mesh" in r ? list.find((m) => m.name === r.mesh) : undefined) ?? list[0];
  return (
    <>
      <header class="top">
        <div class="bar">
          <a class="brand" href="#/">ztm</a>
          <Nav r={r} mesh={current} all={list} />
        </div>
      </header>
      <main id="main">
        <ErrorBox message={meshesError.value} />
        {current && "mesh" in r && <HubBanner mesh={current} />}
        {meshesLoaded.value
          ? <Screen r={r} props={props} current={current} />
          : !meshesError.value && <p class="muted">Loading…</p>}
      </main>
      <footer class="foot muted">ztm agent {props.version}</footer>
    </>
  );
}

function Nav(props: { r: Route; mesh?: MeshSummary; all: MeshSummary[] }) {
  const { r, mesh, all } = props;
  const link = (to: Route, text: string, active: boolean) => (
    <a href={hrefOf(to)} aria-current={active ? "page" : undefined}>{text}</a>
  );
  return (
    <nav class="nav" aria-label="Main">
      {link({ view: "status" }, "Status", r.view === "status")}
      {mesh &&
        link(
          { view: "endpoints", mesh: mesh.name, q: "", page: 1 },
          "Endpoints",
          r.view === "endpoints" || r.view === "endpoint",
        )}
      {mesh &&
        link(
          { view: "services", mesh: mesh.name, q: "", page: 1 },
          "Services",
          r.view === "services",
        )}
      {mesh?.canInvite &&
        link({ view: "invite", mesh: mesh.name }, "Invite", r.view === "invite")}
      {link({ view: "join" }, "Join", r.view === "join")}
      {all.length > 1 && mesh && (
        <span class="mesh-pick">
          <label for="mesh-pick">Mesh</label>
          <select
            id="mesh-pick"
            value={mesh.name}
            onChange={(e) => {
              const name = e.currentTarget.value;
              if (r.view === "invite") return navigate({ view: "invite", mesh: name });
              const view = r.view === "services" ? "services" : "endpoints";
              navigate({ view, mesh: name, q: "", page: 1 });
            }}
          >
            {all.map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
          </select>
        </span>
      )}
    </nav>
  );
}

function HubBanner(props: { mesh: MeshSummary }) {
  const s = props.mesh.status;
  if (s?.connected) return null;
  return (
    <div class="error" role="alert">
      <strong>Hub link of {props.mesh.name} is down.</strong>{" "}
      {s?.lastError ? `Last error: ${s.lastError}.` : "The agent is trying to reach the hub."}{" "}
      Lists below may be stale or fail until it is back (see <a href="#/">Status</a>).
    </div>
  );
}

function Screen(props: { r: Route; props: DashboardProps; current?: MeshSummary }) {
  const { r, current } = props;
  const name = props.props.defaultEndpointName;
  if (r.view === "join") return <JoinView defaultEndpointName={name} />;
  if (r.view === "status") return <StatusView defaultEndpointName={name} />;
  if (!current || current.name !== r.mesh) {
    return (
      <ErrorBox
        message={`This agent has not joined a mesh named "${r.mesh}". Pick one on the Status screen.`}
      />
    );
  }
  const self = current.endpoint.id;
  const connected = current.status?.connected === true;
  switch (r.view) {
    case "invite":
      return <InviteView mesh={current} />;
    case "endpoints":
      return (
        <EndpointsView
          mesh={r.mesh}
          q={r.q}
          page={r.page}
          self={self}
          connected={connected}
        />
      );
    case "endpoint":
      return (
        <EndpointView
          mesh={r.mesh}
          ep={r.ep}
          page={r.page}
          self={self}
          selfName={current.endpoint.name}
          myUser={current.user}
          connected={connected}
        />
      );
    case "services":
      return (
        <ServicesView
          mesh={r.mesh}
          q={r.q}
          page={r.page}
          self={self}
          myUser={current.user}
          connected={connected}
        />
      );
  }
}
