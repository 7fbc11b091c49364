/**
 * A small mesh for cross-component tests, built only through public
 * interfaces: a CA and a hub process, user certificates from the CA's API,
 * and agent processes joined, given services and port mappings through their
 * own local API.
 *
 * @example
 * ```ts
 * await using h = new Harness();
 * const m = await startMeshOf(h, ["alice", "bob"]);
 * await addService(m.agents.bob, "echo", echo.port, ["alice"]);
 * ```
 */
import assert from "node:assert/strict";
import {
  api,
  type ApiBody,
  eventually,
  type Harness,
  issueUser,
  joinMesh,
  type Proc,
  type Service,
  type UserFiles,
} from "./harness.ts";
import type { AuditEntry } from "../agent/store.ts";

/** The mesh name every fixture joins. */
export const MESH = "test";

/** A running agent joined to {@link MESH}. */
export interface MeshAgent {
  proc: Service & { dir: string; database: string };
  /** `http://127.0.0.1:PORT` of its API (changes when the agent restarts). */
  url: string;
  files: UserFiles;
  endpointId: string;
  endpointName: string;
}

/** A CA, a hub and one agent per user. */
export interface TestMesh {
  ca: Service & { dir: string; database: string };
  hub: Service & { dir: string; address: string };
  agents: Record<string, MeshAgent>;
}

/**
 * Starts a CA, a hub (with `opts.hubArgs` appended to its flags), and an
 * agent per user, each joined and connected.
 */
export async function startMeshOf(
  h: Harness,
  users: string[],
  opts: { hubArgs?: string[] } = {},
): Promise<TestMesh> {
  const ca = await h.startCa();
  const hub = await h.startHub(ca, { args: opts.hubArgs });
  const agents: Record<string, MeshAgent> = {};
  await Promise.all(users.map(async (user) => {
    agents[user] = await startJoinedAgent(h, hub.address, await issueUser(ca.url, user));
  }));
  return { ca, hub, agents };
}

/** Starts an agent and joins it to {@link MESH} as `files.user`; waits until connected. */
export async function startJoinedAgent(
  h: Harness,
  hubAddress: string,
  files: UserFiles,
  endpointName = `${files.user}-ep`,
  agentArgs: string[] = [],
): Promise<MeshAgent> {
  const proc = await h.startAgent({ name: `agent-${endpointName}`, args: agentArgs });
  const joined = await joinMesh(proc.url, MESH, files, hubAddress, endpointName);
  const agent = { proc, url: proc.url, files, endpointId: joined.endpoint.id, endpointName };
  await waitConnected(agent);
  return agent;
}

/**
 * The agent's `GET /api/meshes/{mesh}` body. When the API does not answer
 * because the agent process died, throws with the process's last output.
 */
export async function meshStatus(
  agent: { url: string; proc?: Proc },
  mesh = MESH,
): Promise<ApiBody> {
  let res;
  try {
    res = await api(agent.url, "GET", `/api/meshes/${mesh}`);
  } catch (err) {
    if (agent.proc?.exited) {
      throw new Error(`the agent process exited:\n${agent.proc.tail(15)}`, { cause: err });
    }
    throw err;
  }
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Waits until the agent reports its hub link up. */
export async function waitConnected(agent: { url: string }, timeoutMs = 15_000): Promise<void> {
  await eventually(
    async () => (await meshStatus(agent)).status?.connected === true,
    timeoutMs,
    `agent ${agent.url} connected`,
  );
}

/** Publishes `tcp/name` → `127.0.0.1:port` on the agent's endpoint, open to `users`. */
export async function addService(
  agent: MeshAgent,
  name: string,
  port: number,
  users: string[],
): Promise<void> {
  const res = await api(
    agent.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${agent.endpointId}/services/tcp/${name}`,
    { host: "127.0.0.1", port, users },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

/** Maps `127.0.0.1:port` on the agent to the mesh service `tcp/service`. */
export async function addPortMapping(
  agent: MeshAgent,
  port: number,
  service: string,
): Promise<void> {
  const res = await api(
    agent.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${agent.endpointId}/ports/127.0.0.1/tcp/${port}`,
    { target: { service } },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

/** The hub's record of `endpointId` as seen through `via`'s API (`GET …/endpoints`). */
export async function endpointSeenBy(via: { url: string }, endpointId: string): Promise<ApiBody> {
  const res = await api(via.url, "GET", `/api/meshes/${MESH}/endpoints?limit=500`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.items.find((e: { id: string }) => e.id === endpointId);
}

/**
 * Polls `check` for `ms` and fails as soon as it returns true: for "this must
 * not happen during a while" (the only place a test waits out a span of time).
 */
export async function never(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) throw new Error(`${what} happened`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * An API row of a service or port mapping without its live `state` (which
 * counts connections and errors) and a creation's `warning`: what was stored.
 */
export function withoutState(row: ApiBody): ApiBody {
  const { state: _state, warning: _warning, ...stored } = row;
  return stored;
}

/** `/api/meshes/{MESH}/endpoints/{ep}/{rest}` of the agent API; `ep` is an endpoint id or name. */
export function endpointPath(ep: string, rest: string): string {
  return `/api/meshes/${MESH}/endpoints/${encodeURIComponent(ep)}/${rest}`;
}

/** One entry of an endpoint's audit log (`GET …/endpoints/{ep}/log`), as the agent stores it. */
export type { AuditEntry } from "../agent/store.ts";

/** The agent's own audit log in {@link MESH}, newest first, read through its local API. */
export async function auditLog(agent: MeshAgent): Promise<AuditEntry[]> {
  const res = await api(agent.url, "GET", `${endpointPath(agent.endpointId, "log")}?limit=500`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.items;
}

/**
 * Stops `agent`'s process and starts a new one on the same database (its
 * API gets a new port: `agent.url` is updated); waits until it is connected.
 */
export async function restartJoinedAgent(h: Harness, agent: MeshAgent): Promise<void> {
  const status = await agent.proc.stop();
  assert.equal(status.code, 0, `agent stopped with ${status.code}:\n${agent.proc.tail()}`);
  agent.proc = await h.startAgent({ dir: agent.proc.dir, name: agent.proc.name });
  agent.url = agent.proc.url;
  await waitConnected(agent);
}

/**
 * Starts an agent joined to {@link MESH} with `bootstraps` (the hubs it should hold), as
 * endpoint `{user}-ep`; waits until it is connected to one of them.
 */
export async function joinedOn(
  h: Harness,
  bootstraps: string[],
  files: UserFiles,
  timeoutMs = 30_000,
): Promise<MeshAgent> {
  const endpointName = `${files.user}-ep`;
  const proc = await h.startAgent({ name: `agent-${endpointName}` });
  const res = await api(proc.url, "POST", `/api/meshes/${MESH}`, {
    ca: files.ca,
    agent: { name: endpointName, certificate: files.certificate, privateKey: files.privateKey },
    bootstraps,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const agent = { proc, url: proc.url, files, endpointId: res.body.endpoint.id, endpointName };
  await waitConnected(agent, timeoutMs);
  return agent;
}

/** The agent's per-hub session states (`status.hubs`), by hub address. */
export async function hubStates(agent: MeshAgent): Promise<Record<string, ApiBody>> {
  const hubs: ApiBody[] = (await meshStatus(agent)).status?.hubs ?? [];
  return Object.fromEntries(hubs.map((x) => [x.address, x]));
}
