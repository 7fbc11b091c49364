/** @jsxImportSource preact */
/**
 * Join a mesh: mesh name, endpoint name, hub addresses and the three PEM
 * files, each picked from disk or pasted. The form checks that each text
 * looks like what it should be; the agent then checks the real thing (the key
 * matches the certificate, the certificate chains to the CA, is valid and has
 * the user role) before it saves anything, and its refusal is shown here.
 */
import { useState } from "preact/hooks";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { MeshSummary } from "../api_types.ts";
import { ErrorBox, MeshAndEndpointFields, Notice } from "../components.tsx";
import { refreshMeshes } from "../meshes.ts";
import { navigate } from "../route.ts";
import { InviteJoinForm } from "./join_invite.tsx";

/** A PEM file chosen or pasted. */
interface PemSlot {
  key: "ca" | "certificate" | "privateKey";
  label: string;
  hint: string;
  /** What the text must contain to be worth sending. */
  marker: RegExp;
  expected: string;
}

const SLOTS: PemSlot[] = [
  {
    key: "ca",
    label: "CA certificate",
    hint: "ca.crt — the mesh CA's certificate",
    marker: /-----BEGIN CERTIFICATE-----/,
    expected: "a PEM certificate (-----BEGIN CERTIFICATE-----)",
  },
  {
    key: "certificate",
    label: "User certificate",
    hint: "e.g. alice.crt — issued to you by that CA",
    marker: /-----BEGIN CERTIFICATE-----/,
    expected: "a PEM certificate (-----BEGIN CERTIFICATE-----)",
  },
  {
    key: "privateKey",
    label: "Private key",
    hint: "e.g. alice.key — the key of that certificate; it stays on this machine",
    marker: /-----BEGIN (EC |RSA )?PRIVATE KEY-----/,
    expected: "a PEM private key (-----BEGIN PRIVATE KEY-----)",
  },
];

/** Largest file the form reads (a PEM certificate is ~1 KiB). */
const MAX_FILE_BYTES = 16 * 1024;

/** The join form. */
export function JoinForm(props: { defaultEndpointName: string }) {
  const [mesh, setMesh] = useState("");
  const [endpointName, setEndpointName] = useState(props.defaultEndpointName);
  const [hubs, setHubs] = useState("");
  const [pems, setPems] = useState<Record<string, string>>({
    ca: "",
    certificate: "",
    privateKey: "",
  });
  const [problems, setProblems] = useState<Record<string, string>>({});
  /** Names of the picked files, for messages; a pasted text has none. */
  const [fileNames, setFileNames] = useState<Record<string, string>>({});
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [connecting, setConnecting] = useState<string>();
  /** The private key is masked unless asked for. */
  const [showKey, setShowKey] = useState(false);

  const pick = async (slot: PemSlot, file: File | undefined) => {
    if (!file) return;
    if (file.size > MAX_FILE_BYTES) {
      setProblems((p) => ({ ...p, [slot.key]: `${file.name} is too large for ${slot.expected}` }));
      return;
    }
    const text = await file.text();
    setPems((p) => ({ ...p, [slot.key]: text }));
    setFileNames((n) => ({ ...n, [slot.key]: file.name }));
    setProblems((p) => ({
      ...p,
      [slot.key]: slot.marker.test(text) ? "" : notPem(file.name, slot),
    }));
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    const found: Record<string, string> = {};
    for (const slot of SLOTS) {
      const text = pems[slot.key].trim();
      if (!text) found[slot.key] = `Choose or paste the ${slot.label.toLowerCase()}`;
      else if (!slot.marker.test(text)) {
        found[slot.key] = notPem(fileNames[slot.key] || "The pasted text", slot);
      }
    }
    const bootstraps = hubs.split(/[\s,]+/).filter(Boolean);
    if (!mesh.trim()) found.mesh = "Give the mesh a name";
    if (bootstraps.length === 0) found.hubs = "Give at least one hub address, host:port";
    setProblems(found);
    if (Object.values(found).some(Boolean)) {
      setError("Some fields need attention; nothing was saved");
      return;
    }
    setBusy(true);
    setConnecting("Checking the files and joining…");
    const res = await callApi<MeshSummary>(
      "POST",
      agentPath(AGENT_PATHS.mesh, { mesh: mesh.trim() }),
      {
        ca: pems.ca,
        agent: {
          name: endpointName.trim() || undefined,
          certificate: pems.certificate,
          privateKey: pems.privateKey,
        },
        bootstraps,
      },
    );
    if (!res.ok) {
      setBusy(false);
      setConnecting(undefined);
      // Whatever the agent answered, in its words; and whether the mesh was kept or not.
      const list = res.status === 0
        ? undefined
        : await callApi<MeshSummary[]>("GET", AGENT_PATHS.meshes);
      const kept = list?.ok === true && list.data.some((m) => m.name === mesh.trim());
      setError(
        `${res.message.replace(/\.$/, "")}. ${
          kept
            ? "The mesh was saved and the agent keeps trying; the Status screen shows its hub link"
            : "Nothing was saved"
        }`,
      );
      await refreshMeshes();
      return;
    }
    const name = res.data.name;
    setConnecting(`Joined ${name}. Connecting to the hub ${bootstraps.join(", ")}…`);
    const up = await waitConnected(name, (m) => {
      const last = m.status?.lastError;
      setConnecting(
        `Joined ${name}. Connecting to the hub ${m.status?.hub ?? bootstraps.join(", ")}…` +
          (last ? ` Not yet: ${last}` : ""),
      );
    });
    await refreshMeshes();
    setBusy(false);
    if (up.connected) {
      navigate({ view: "endpoints", mesh: name, q: "", page: 1 });
      return;
    }
    setConnecting(undefined);
    setError(
      `Joined ${name}, but its hub link is not up: ${
        up.lastError ?? "the hub has not answered yet"
      }. The agent keeps trying; the Status screen shows the link`,
    );
  };

  return (
    <section class="card" aria-labelledby="join-title">
      <h2 id="join-title">Join with certificate files</h2>
      <form onSubmit={submit} noValidate>
        <MeshAndEndpointFields
          prefix="join"
          meshLabel="Mesh name"
          endpointLabel="Endpoint name"
          mesh={mesh}
          endpointName={endpointName}
          onMesh={setMesh}
          onEndpointName={setEndpointName}
        />
        <FieldProblem id="join-mesh" message={problems.mesh} />
        <div class="field">
          <label for="join-hubs">Hub addresses</label>
          <input
            id="join-hubs"
            value={hubs}
            placeholder="hub.example.com:8888"
            aria-describedby="join-hubs-hint"
            autocomplete="off"
            onInput={(e) => setHubs(e.currentTarget.value)}
          />
          <small id="join-hubs-hint">host:port; several separated by spaces or commas</small>
          <FieldProblem id="join-hubs" message={problems.hubs} />
        </div>
        {SLOTS.map((slot) => (
          <fieldset class="pem" key={slot.key}>
            <legend>{slot.label}</legend>
            <label for={`join-${slot.key}-file`}>Choose file</label>
            <input
              id={`join-${slot.key}-file`}
              type="file"
              accept=".crt,.pem,.cer,.key,text/plain"
              aria-describedby={`join-${slot.key}-hint`}
              onChange={(e) => pick(slot, e.currentTarget.files?.[0])}
            />
            <small id={`join-${slot.key}-hint`}>{slot.hint}</small>
            <label for={`join-${slot.key}-text`}>or paste it</label>
            <textarea
              id={`join-${slot.key}-text`}
              class={slot.key === "privateKey" && !showKey ? "secret" : undefined}
              rows={3}
              spellcheck={false}
              autocomplete="off"
              value={pems[slot.key]}
              placeholder={slot.expected}
              onInput={(e) => {
                const text = e.currentTarget.value;
                setPems((p) => ({ ...p, [slot.key]: text }));
                setFileNames((n) => ({ ...n, [slot.key]: "" }));
              }}
            />
            {slot.key === "privateKey" && (
              <label class="check" for="join-privateKey-show">
                <input
                  id="join-privateKey-show"
                  type="checkbox"
                  checked={showKey}
                  onChange={(e) => setShowKey(e.currentTarget.checked)}
                />{" "}
                Show the key
              </label>
            )}
            <FieldProblem id={`join-${slot.key}`} message={problems[slot.key]} />
          </fieldset>
        ))}
        <ErrorBox
          title={error?.startsWith(`Joined `) ? "Hub not reached" : "Not joined"}
          message={error}
        />
        <Notice message={connecting} />
        <div class="actions">
          <button type="submit" disabled={busy}>{busy ? "Checking…" : "Join mesh"}</button>
        </div>
      </form>
    </section>
  );
}

/** How long a fresh join waits for its hub link before showing the status screen. */
const CONNECT_WAIT_MS = 15_000;

/**
 * Polls the mesh until its hub link is up (reporting each answer to
 * `progress`); not connected, with the link's last error, after
 * {@link CONNECT_WAIT_MS}.
 */
async function waitConnected(
  mesh: string,
  progress: (m: MeshSummary) => void,
): Promise<{ connected: boolean; lastError?: string }> {
  const until = Date.now() + CONNECT_WAIT_MS;
  let lastError: string | undefined;
  while (Date.now() < until) {
    const res = await callApi<MeshSummary>("GET", agentPath(AGENT_PATHS.mesh, { mesh }));
    if (res.ok) {
      if (res.data.status?.connected) return { connected: true };
      lastError = res.data.status?.lastError ?? lastError;
      progress(res.data);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { connected: false, lastError };
}

function notPem(name: string, slot: PemSlot): string {
  return `${name} is not ${slot.expected}`;
}

function FieldProblem(props: { id: string; message?: string }) {
  if (!props.message) return null;
  return <p class="field-problem" id={`${props.id}-problem`}>{props.message}</p>;
}

/** The join screen. */
export function JoinView(props: { defaultEndpointName: string }) {
  return (
    <>
      <h1>Join a mesh</h1>
      <InviteJoinForm defaultEndpointName={props.defaultEndpointName} />
      <JoinForm defaultEndpointName={props.defaultEndpointName} />
    </>
  );
}
