/**
 * The mesh of the NAT lab, built only through public interfaces and the
 * production defaults: the CA (`127.0.0.1:9999`) and the hub (`0.0.0.0:8888`,
 * data port `0.0.0.0:8889`) on the internet host, alice's agent at home,
 * bob's agent in the office (each on `127.0.0.1:7777` of its own host), all
 * driven with `curl` from inside their hosts. Fixed ports are safe here: each
 * lab has its own namespaces.
 *
 * @example
 * ```ts
 * await using lab = await NatLab.create();
 * const mesh = await startLabMesh(lab);
 * await mesh.home.api("GET", `/api/meshes/${LAB_MESH}`);
 * ```
 */
import { join } from "node:path";
import type { ApiBody, Proc } from "../fixtures/harness.ts";
import { type Host, LAB_ADDRESSES, type NatLab } from "./nat_lab.ts";

/** The mesh both agents join. */
export const LAB_MESH = "lab";
/** The hub's control and data ports (the defaults). */
export const HUB_PORT = 8888;
export const HUB_DATA_PORT = 8889;
/** The agents' API (the default). */
const AGENT_API = "http://127.0.0.1:7777";
const CA_API = "http://127.0.0.1:9999";

/** An agent running in the lab. */
export interface LabAgent {
  host: Host;
  user: string;
  proc: Proc;
  endpointId: string;
  /** Calls the agent's API from inside its host; returns the status and the parsed body. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: ApiBody }>;
}

/** The CA, the hub and the two agents. */
export interface LabMesh {
  ca: Proc;
  hub: Proc;
  home: LabAgent;
  office: LabAgent;
  /**
   * Stops the hub, waits `downMs`, and starts it again on the same address
   * and data dir; resolves when it listens.
   */
  restartHub(downMs: number): Promise<void>;
}

/** Starts the CA and the hub on the internet host and one joined agent each at home and office. */
export async function startLabMesh(lab: NatLab): Promise<LabMesh> {
  const caDb = join(lab.dir, "ca.db");
  const ca = lab.spawn("internet", "ca", "ca/main.ts", [`--database=${caDb}`]);
  await ca.waitForLog((l) => l.msg === "listening");
  const hubArgs = [
    "--ca=127.0.0.1:9999",
    `--names=${LAB_ADDRESSES.internet}`,
    `--data-dir=${join(lab.dir, "hub")}`,
    `--ca-token-file=${caDb}.token`,
  ];
  const startHub = async () => {
    const hub = lab.spawn("internet", "hub", "hub/main.ts", hubArgs);
    await hub.waitForLog((l) => l.msg === "data port listening");
    await hub.waitForLog((l) => l.msg === "listening");
    return hub;
  };
  let hub = await startHub();
  const [home, office] = await Promise.all([
    startLabAgent(lab, "home", "alice"),
    startLabAgent(lab, "office", "bob"),
  ]);
  return {
    ca,
    get hub() {
      return hub;
    },
    home,
    office,
    async restartHub(downMs: number) {
      await hub.stop();
      await new Promise((r) => setTimeout(r, downMs));
      hub = await startHub();
    },
  };
}

/**
 * Issues `user`'s certificate, starts an agent on `host` and joins it through
 * `bootstraps` (the lab's hub by default); resolves once a hub session is up.
 */
export async function startLabAgent(
  lab: NatLab,
  host: Host,
  user: string,
  bootstraps: string[] = [`${LAB_ADDRESSES.internet}:${HUB_PORT}`],
): Promise<LabAgent> {
  const files = await issueUser(lab, user);
  const database = join(lab.dir, host, "agent.db");
  await Deno.mkdir(join(lab.dir, host), { recursive: true });
  const proc = lab.spawn(host, `agent-${host}`, "agent/main.ts", [`--database=${database}`]);
  await proc.waitForLog((l) => l.msg === "listening");
  const token = (await Deno.readTextFile(`${database}.token`)).trim();
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await lab.curl(host, `${AGENT_API}${path}`, {
      method,
      headers: [
        `Authorization: Bearer ${token}`,
        ...(body === undefined ? [] : ["Content-Type: application/json"]),
      ],
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.code !== 0) throw new Error(`agent API on ${host} unreachable: ${res.stderr}`);
    let parsed: ApiBody = res.body;
    try {
      parsed = JSON.parse(res.body);
    } catch { /* keep the text */ }
    return { status: res.status, body: parsed };
  };
  const joined = await api("POST", `/api/meshes/${LAB_MESH}`, {
    ca: files.ca,
    agent: { name: `${host}-pc`, certificate: files.certificate, privateKey: files.privateKey },
    bootstraps,
  });
  if (joined.status !== 201) {
    throw new Error(`join from ${host}: ${joined.status} ${JSON.stringify(joined.body)}`);
  }
  await proc.waitForLog((l) => l.msg === "hub connected");
  return { host, user, proc, endpointId: joined.body.endpoint.id, api };
}

/** A user's key and certificate and the CA certificate, from the CA's API as the walkthrough does. */
export async function issueUser(
  lab: NatLab,
  user: string,
): Promise<{ ca: string; certificate: string; privateKey: string }> {
  const key = await lab.curl("internet", `${CA_API}/api/certificates/${user}`, { method: "POST" });
  if (key.status !== 201) throw new Error(`issuing ${user}: ${key.status} ${key.body}`);
  const certificate = await lab.curl("internet", `${CA_API}/api/certificates/${user}`);
  const ca = await lab.curl("internet", `${CA_API}/api/certificates/ca`);
  return { ca: ca.body, certificate: certificate.body, privateKey: key.body };
}
