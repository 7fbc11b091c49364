/** @jsxImportSource preact */
/**
 * Status: each joined mesh with its hub link (connected or not, to which hub,
 * since when, and the last error) and each of its hubs' sessions, a banner
 * when the mesh CA's own certificate ends within a year, this endpoint's
 * identity in it, its proxy (on or off), and "Leave" behind a confirmation.
 * With no mesh yet it shows the join form.
 */
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { HubSession, MeshSummary } from "../api_types.ts";
import { ConfirmButton, CopyButton, OnlineBadge, Time } from "../components.tsx";
import { meshes, refreshMeshes } from "../meshes.ts";
import { hrefOf } from "../route.ts";
import { JoinForm } from "./join.tsx";
import { InviteJoinForm } from "./join_invite.tsx";
import { ProxyControl } from "./proxy.tsx";

/** The status screen. */
export function StatusView(props: { defaultEndpointName: string }) {
  const list = meshes.value;
  if (list.length === 0) {
    return (
      <>
        <section class="card intro">
          <h1>Welcome to ztm</h1>
          <p>
            This agent is not in a mesh yet. Join one with the invite your mesh's administrator gave
            you (ztm invite), or with three files: the CA certificate, your user certificate and its
            private key.
          </p>
        </section>
        <InviteJoinForm defaultEndpointName={props.defaultEndpointName} />
        <JoinForm defaultEndpointName={props.defaultEndpointName} />
      </>
    );
  }
  return (
    <>
      <h1>Status</h1>
      {list.map((m) => <MeshCard key={m.name} mesh={m} />)}
      <p>
        <a class="button secondary" href={hrefOf({ view: "join" })}>Join another mesh</a>
      </p>
    </>
  );
}

function MeshCard(props: { mesh: MeshSummary }) {
  const m = props.mesh;
  const s = m.status;
  const headingId = `mesh-${m.name}-title`;
  return (
    <section class="card mesh" aria-labelledby={headingId} data-mesh={m.name}>
      <div class="card-head">
        <h2 id={headingId}>Mesh {m.name}</h2>
        <OnlineBadge
          online={s?.connected === true}
          onText="hub connected"
          offText={s ? "hub not connected" : "not running"}
        />
      </div>
      {m.caCertificate?.warning && (
        <div class="warning" role="alert" data-testid="ca-expiry">
          <strong>The mesh's CA needs rotating.</strong> {m.caCertificate.warning}.
        </div>
      )}
      <dl class="facts">
        <dt>Hub</dt>
        <dd>
          {s?.hub ?? m.bootstraps.join(", ")}{" "}
          <CopyButton text={s?.hub ?? m.bootstraps.join(",")} what="hub address" />
          {s && (
            <span class="muted">
              &nbsp;· {s.connected ? "connected" : "down"} since <Time iso={s.since} />
            </span>
          )}
        </dd>
        {s?.hubs && s.hubs.length > 0 && (
          <>
            <dt>Hubs</dt>
            <dd>
              <HubList hubs={s.hubs} />
            </dd>
          </>
        )}
        {s?.lastError && (
          <>
            <dt>Last error</dt>
            <dd class="error-text" data-testid="last-error">{s.lastError}</dd>
          </>
        )}
        {!s && (
          <>
            <dt>Problem</dt>
            <dd class="error-text">
              The mesh is joined but did not start; the agent's log says why.
            </dd>
          </>
        )}
        <dt>This endpoint</dt>
        <dd>
          {m.endpoint.name} <code class="muted">{m.endpoint.id}</code>{" "}
          <CopyButton text={m.endpoint.id} what="endpoint id" />
        </dd>
        <dt>User</dt>
        <dd>{m.user}</dd>
        <dt>Certificate valid until</dt>
        <dd>
          <Time iso={m.certificate.notAfter} />
        </dd>
        {m.caCertificate && (
          <>
            <dt>Mesh CA valid until</dt>
            <dd data-testid="ca-not-after">
              <Time iso={m.caCertificate.notAfter} />
            </dd>
          </>
        )}
        {m.certificate.renewal && (
          <>
            <dt>Renewal</dt>
            <dd data-testid="renewal">
              {m.certificate.renewal.warning
                ? <span class="error-text">{m.certificate.renewal.warning}</span>
                : (
                  <>
                    renews itself at <Time iso={m.certificate.renewal.renewAt} />
                    {m.certificate.renewal.renewals > 0 && (
                      <span class="muted">
                        &nbsp;· renewed {m.certificate.renewal.renewals}{" "}
                        time{m.certificate.renewal.renewals === 1 ? "" : "s"}
                      </span>
                    )}
                    {m.certificate.renewal.lastError && (
                      <span class="error-text">
                        &nbsp;· last attempt failed: {m.certificate.renewal.lastError}
                      </span>
                    )}
                  </>
                )}
            </dd>
          </>
        )}
      </dl>
      {s && <ProxyControl mesh={m.name} />}
      <div class="actions">
        <a class="button" href={hrefOf({ view: "endpoints", mesh: m.name, q: "", page: 1 })}>
          Endpoints
        </a>
        <a class="button" href={hrefOf({ view: "services", mesh: m.name, q: "", page: 1 })}>
          Services
        </a>
        <a
          class="button"
          href={hrefOf({ view: "endpoint", mesh: m.name, ep: m.endpoint.id, page: 1 })}
        >
          This endpoint
        </a>
        {m.canInvite && (
          <a class="button" href={hrefOf({ view: "invite", mesh: m.name })}>
            Invite a device
          </a>
        )}
        <LeaveButton mesh={m.name} />
      </div>
    </section>
  );
}

/**
 * Every hub session of the mesh: its address, up or down in words (with the
 * last error when down), the last PING's round trip, and since when.
 */
function HubList(props: { hubs: HubSession[] }) {
  return (
    <ul class="hubs">
      {props.hubs.map((hub) => (
        <li key={hub.address} data-testid="hub" data-address={hub.address}>
          <code>{hub.address}</code>{" "}
          <OnlineBadge online={hub.connected} onText="connected" offText="not connected" />
          <span class="hub-state">
            {hub.connected
              ? hub.rttMs === null ? " round trip not measured yet" : ` round trip ${hub.rttMs} ms`
              : hub.lastError
              ? ` ${hub.problem ?? hub.lastError}`
              : " trying to reach it"}
          </span>
          {!hub.connected && hub.lastError && hub.problem && hub.problem !== hub.lastError && (
            <small class="muted">&nbsp;({hub.lastError})</small>
          )}
          <span class="muted">
            &nbsp;· {hub.connected ? "up" : "down"} since <Time iso={hub.since} />
          </span>
        </li>
      ))}
    </ul>
  );
}

function LeaveButton(props: { mesh: string }) {
  return (
    <ConfirmButton
      label="Leave mesh…"
      confirmLabel={`Confirm leaving mesh ${props.mesh}`}
      large
      text="Leave mesh…"
      question={
        <>
          Leave{" "}
          <strong>{props.mesh}</strong>? This endpoint's services and port mappings in it stop, and
          its certificate and key are deleted from this agent.
        </>
      }
      yes={`Yes, leave ${props.mesh}`}
      run={async () => {
        const res = await callApi("DELETE", agentPath(AGENT_PATHS.mesh, { mesh: props.mesh }));
        if (!res.ok) return res.message;
        await refreshMeshes();
      }}
    />
  );
}
