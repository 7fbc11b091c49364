/** @jsxImportSource preact */
/**
 * Join with an invite: paste the string `ztm invite` printed on the CA's
 * machine. The agent makes this machine's key itself, gets its certificate
 * through the invite's hub (checking the CA against the fingerprint the
 * invite pins) and joins; no file is chosen and no key is pasted.
 */
import { useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { MeshSummary } from "../api_types.ts";
import { ErrorBox, MeshAndEndpointFields, Notice } from "../components.tsx";
import { refreshMeshes } from "../meshes.ts";
import { navigate } from "../route.ts";

const PREFIX = "ztm-invite-1.";

/** The invite paste box. */
export function InviteJoinForm(props: { defaultEndpointName: string }) {
  const [mesh, setMesh] = useState("");
  const [endpointName, setEndpointName] = useState(props.defaultEndpointName);
  const [invite, setInvite] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const text = invite.replace(/\s+/g, "");
    if (!mesh.trim()) return setError("Give the mesh a name; nothing was sent");
    if (!text.startsWith(PREFIX)) {
      return setError(`An invite starts with ${PREFIX}; paste the whole string ztm invite printed`);
    }
    setBusy(true);
    setNotice("Making this machine's key and asking the hub for its certificate…");
    const res = await callApi<MeshSummary>(
      "POST",
      `${agentPath(AGENT_PATHS.mesh, { mesh: mesh.trim() })}?wait=20`,
      {
        invite: text,
        agent: { name: endpointName.trim() || undefined },
      },
    );
    setBusy(false);
    setNotice(undefined);
    await refreshMeshes();
    if (!res.ok) {
      setError(`${res.message.replace(/\.$/, "")}. Nothing was saved`);
      return;
    }
    setInvite("");
    navigate({ view: "endpoints", mesh: res.data.name, q: "", page: 1 });
  };

  return (
    <section class="card" aria-labelledby="invite-title">
      <h2 id="invite-title">Join with an invite</h2>
      <form onSubmit={submit} noValidate>
        <MeshAndEndpointFields
          prefix="invite"
          meshLabel="Mesh to join"
          endpointLabel="This machine in the mesh"
          mesh={mesh}
          endpointName={endpointName}
          onMesh={setMesh}
          onEndpointName={setEndpointName}
        />
        <div class="field">
          <label for="invite-text">Invite</label>
          <textarea
            id="invite-text"
            class="secret"
            rows={3}
            spellcheck={false}
            autocomplete="off"
            value={invite}
            placeholder={`${PREFIX}… (from ztm invite on the CA's machine)`}
            aria-describedby="invite-text-hint"
            onInput={(e) => setInvite(e.currentTarget.value)}
          />
          <small id="invite-text-hint">
            The key is made on this machine and never leaves it; the invite works once.
          </small>
        </div>
        <ErrorBox title="Not joined" message={error} />
        <Notice message={notice} />
        <div class="actions">
          <button id="invite-submit" type="submit" disabled={busy}>
            {busy ? "Joining…" : "Join with invite"}
          </button>
        </div>
      </form>
    </section>
  );
}
