/** @jsxImportSource preact */
/**
 * The proxy control on a mesh's status card: whether this agent's SOCKS5 and
 * HTTP proxy for the mesh is on, where it listens, the commands that use it,
 * and a form to turn it on (at a loopback address) or off.
 */
import { useEffect, useState } from "preact/hooks";
import { bytesText } from "@ztm/shared/bytes_text";
import { AGENT_PATHS, agentPath } from "@ztm/shared/agent_paths";
import { callApi } from "../api_client.ts";
import type { ProxyStatus } from "../api_types.ts";
import { CopyButton, ErrorBox, Field, Time } from "../components.tsx";

const DEFAULT_LISTEN = "127.0.0.1:1080";

/** The proxy of `mesh`: its state and the on/off form. */
export function ProxyControl(props: { mesh: string }) {
  const [status, setStatus] = useState<ProxyStatus>();
  const [listen, setListen] = useState(DEFAULT_LISTEN);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const path = agentPath(AGENT_PATHS.proxy, { mesh: props.mesh });
  useEffect(() => {
    callApi<ProxyStatus>("GET", path).then((res) => {
      if (res.ok) {
        setStatus(res.data);
        if (res.data.listen) setListen(res.data.listen);
      } else setError(res.message);
    });
  }, [path]);
  const change = async (method: "PUT" | "DELETE") => {
    setBusy(true);
    setError(undefined);
    const res = await callApi<ProxyStatus>(method, path, method === "PUT" ? { listen } : undefined);
    setBusy(false);
    if (res.ok) setStatus(res.data);
    else setError(res.message);
  };
  const id = `proxy-${props.mesh}`;
  const on = status?.enabled === true;
  const command = status?.address
    ? `curl --socks5-hostname ${status.address} http://SERVICE.mesh/`
    : "";
  return (
    <div class="proxy" data-testid="proxy">
      <h3 id={`${id}-title`}>Proxy: reach services by name</h3>
      {!status && !error && <p class="muted">Asking the agent…</p>}
      {status && !on && (
        <p>
          Off. When on, programs on this computer reach this mesh's services by name (
          <code>ssh.mesh</code>, <code>web.office.mesh</code>) through one SOCKS5 and HTTP proxy.
        </p>
      )}
      {on && status.listening && (
        <p data-testid="proxy-on">
          On at <strong>{status.address}</strong> (SOCKS5 and HTTP), {status.connections}{" "}
          connection{status.connections === 1 ? "" : "s"} open. <code>{command}</code>{" "}
          <CopyButton text={command} what="proxy command" />
        </p>
      )}
      {on && status.state && (
        <p class="muted" data-testid="proxy-counts">
          {status.state.connections} connection{status.state.connections === 1 ? "" : "s"}{" "}
          since it started, {bytesText(status.state.bytesUp)} up,{" "}
          {bytesText(status.state.bytesDown)} down.
          {status.state.lastError && (
            <>
              {" "}Last refusal: {status.state.lastError.message} (
              <Time iso={status.state.lastError.time} />)
            </>
          )}
        </p>
      )}
      {on && !status.listening && (
        <p class="error-text">
          On at {status.listen}, but not listening: {status.error ?? "see the agent's log"}
        </p>
      )}
      {status && (
        <form
          class="inline-form"
          aria-label={`Proxy of mesh ${props.mesh}`}
          onSubmit={(e) => {
            e.preventDefault();
            change("PUT");
          }}
        >
          <Field
            id={`${id}-listen`}
            label="Listen on"
            hint="A loopback address: the proxy asks no password"
            value={listen}
            autocomplete="off"
            onInput={(e) => setListen(e.currentTarget.value)}
          />
          <button type="submit" disabled={busy}>{on ? "Move proxy" : "Turn proxy on"}</button>
          {on && (
            <button
              type="button"
              class="secondary"
              disabled={busy}
              onClick={() => change("DELETE")}
            >
              Turn proxy off
            </button>
          )}
        </form>
      )}
      <ErrorBox message={error} />
    </div>
  );
}
