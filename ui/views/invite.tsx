/** @jsxImportSource preact */
/**
 * Invite a device: only for a mesh whose CA runs beside this agent (`ztm
 * start`; the mesh summary's `canInvite`). The agent passes the request to
 * that CA (`agent/invite_maker.ts`); the answer is shown once, as the string
 * and as a QR code a phone or another machine's camera reads, and is gone
 * when the screen is left. The invite is a secret until it is used.
 */
import { useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { MadeInvite, MeshSummary } from "../api_types.ts";
import { CopyButton, ErrorBox, Field, Time } from "../components.tsx";
import { QrCode } from "../qr_code.tsx";

const EXPIRIES: [string, string][] = [
  ["15m", "15 minutes"],
  ["1h", "1 hour"],
  ["1d", "1 day"],
  ["7d", "7 days"],
];

/** The invite screen of `mesh`. */
export function InviteView(props: { mesh: MeshSummary }) {
  const m = props.mesh;
  const [user, setUser] = useState("");
  const [expires, setExpires] = useState("1h");
  const [uses, setUses] = useState("1");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [made, setMade] = useState<MadeInvite>();

  if (!m.canInvite) {
    return (
      <>
        <h1>Invite a device</h1>
        <ErrorBox
          message={`This agent does not run the CA of mesh ${m.name}: make invites with ztm invite on the CA's machine.`}
        />
      </>
    );
  }

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const n = Number(uses);
    if (!user.trim()) return setError("Name the user the new device will belong to");
    if (!Number.isInteger(n) || n < 1 || n > 100) {
      return setError("Uses is a whole number from 1 to 100");
    }
    setBusy(true);
    const res = await callApi<MadeInvite>(
      "POST",
      agentPath(AGENT_PATHS.invites, { mesh: m.name }),
      {
        user: user.trim(),
        expires,
        uses: n,
      },
    );
    setBusy(false);
    if (!res.ok) return setError(res.message);
    setMade(res.data);
  };

  return (
    <>
      <h1>Invite a device</h1>
      <section class="card" aria-labelledby="invite-make-title">
        <h2 id="invite-make-title">New invite to mesh {m.name}</h2>
        <p class="explain">
          The new device makes its own key; the invite lets it get a certificate for the user named
          here, through the mesh's hub.
        </p>
        <form onSubmit={submit} noValidate>
          <div class="grid2">
            <Field
              id="invite-user"
              label="User"
              hint="Whose device it is; access rules are per user"
              value={user}
              required
              autocomplete="off"
              onInput={(e) => setUser(e.currentTarget.value)}
            />
            <div class="field">
              <label for="invite-expires">Works for</label>
              <select
                id="invite-expires"
                value={expires}
                onChange={(e) => setExpires(e.currentTarget.value)}
              >
                {EXPIRIES.map(([v, t]) => <option key={v} value={v}>{t}</option>)}
              </select>
            </div>
            <Field
              id="invite-uses"
              label="Devices"
              hint="How many devices may use it (1 to 100)"
              type="number"
              min={1}
              max={100}
              value={uses}
              onInput={(e) => setUses(e.currentTarget.value)}
            />
          </div>
          <ErrorBox title="No invite made" message={error} />
          <div class="actions">
            <button id="invite-make" type="submit" disabled={busy}>
              {busy ? "Making…" : "Make invite"}
            </button>
          </div>
        </form>
      </section>
      {made && <MadeInviteCard mesh={m.name} made={made} />}
    </>
  );
}

function MadeInviteCard(props: { mesh: string; made: MadeInvite }) {
  const { made } = props;
  return (
    <section class="card invite-made" aria-labelledby="invite-made-title" data-testid="invite-made">
      <h2 id="invite-made-title">Invite for {made.user}</h2>
      <div class="invite-qr">
        <QrCode
          id="invite-qr"
          text={made.invite}
          label={`QR code of the invite for ${made.user}`}
        />
      </div>
      <div class="field">
        <label for="invite-string">The invite</label>
        <textarea
          id="invite-string"
          class="secret"
          rows={4}
          readOnly
          spellcheck={false}
          value={made.invite}
        />
      </div>
      <p>
        <CopyButton text={made.invite} what="invite" />
      </p>
      <p data-testid="invite-terms">
        Works for {made.usesLeft} device{made.usesLeft === 1 ? "" : "s"} until{" "}
        <Time iso={made.expiresAt} />; the device dials {made.hubs.control.join(", ")}.
      </p>
      <p class="explain">
        On the new device: paste it under "Join with an invite" on its dashboard, or run{" "}
        <code>ztm join {props.mesh} --invite=…</code>. Keep it secret until it is used: whoever
        holds it can join as {made.user}. It is shown only now.
      </p>
    </section>
  );
}
