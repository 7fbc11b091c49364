/**
 * The scale bench's simulator (`bench/scale_sim.ts`) on a small scale: its
 * endpoints are real mutual-TLS sessions that register with a real hub, so a
 * real agent lists every one of them with its user and services, and they
 * come back on their own after the hub restarts.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import { MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { issueSimUsers, Simulators } from "../../bench/scale_sims.ts";
import {
  type SimCredentials,
  simEndpointId,
  simEndpointName,
  simServices,
} from "../../bench/scale_sim.ts";

const ENDPOINTS = 200;
const USERS = 3;

/** Every endpoint the agent lists, paged. */
async function listAll(agentUrl: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  for (let offset = 0;; offset += 100) {
    const res = await api(
      agentUrl,
      "GET",
      `/api/meshes/${MESH}/endpoints?offset=${offset}&limit=100`,
    );
    assertEquals(res.status, 200, JSON.stringify(res.body));
    items.push(...res.body.items);
    if (offset + 100 >= res.body.total) return items;
  }
}

/** Checks that the agent lists all simulated endpoints online, with their users and services. */
async function checkListed(agentUrl: string, creds: SimCredentials): Promise<void> {
  const listed = new Map((await listAll(agentUrl)).map((e) => [String(e.id), e]));
  for (let g = 0; g < ENDPOINTS; g++) {
    const e = listed.get(simEndpointId(g, creds));
    assertEquals(e?.name, simEndpointName(g), `endpoint ${g} is listed`);
    assertEquals(e?.online, true, `endpoint ${g} is online`);
    assertEquals(e?.user, `scale-user-${g % USERS}`);
    assertEquals(e?.services, simServices(g));
  }
}

Deno.test("simulated endpoints all appear in a real agent's endpoint list and come back after a hub restart", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["root"]);
  const agent = m.agents.root;
  const credentials = await issueSimUsers(m.ca.url, USERS, await h.tempDir("ztm-sim-"));
  const creds = JSON.parse(await Deno.readTextFile(credentials)) as SimCredentials;
  await using sims = Simulators.start({
    hubPort: m.hub.port,
    endpoints: ENDPOINTS,
    processes: 2,
    concurrency: 16,
    credentials,
  });
  const online = async () => {
    sims.checkAlive();
    const res = await api(agent.url, "GET", `/api/meshes/${MESH}/endpoints?limit=1`);
    return res.status === 200 && res.body.total === ENDPOINTS + 1 &&
      sims.connected === ENDPOINTS;
  };
  await eventually(online, 60_000, `${ENDPOINTS} simulated endpoints joined`);
  await checkListed(agent.url, creds);

  const web = await api(agent.url, "GET", `/api/meshes/${MESH}/services?q=web&limit=100`);
  assertEquals(web.status, 200);
  assertEquals(web.body.items.map((s: { user: string }) => s.user).sort(), [
    "scale-user-0",
    "scale-user-1",
    "scale-user-2",
  ]);
  const providers = web.body.items.reduce(
    (n: number, s: { providers: unknown[] }) => n + s.providers.length,
    0,
  );
  assertEquals(providers, ENDPOINTS);

  // The hub restarts on the same port: its registry is empty until everyone rejoins.
  await m.hub.stop();
  await h.startHub(m.ca, { dir: m.hub.dir, args: [`--listen=127.0.0.1:${m.hub.port}`] });
  await eventually(
    async () => sims.totals().joins >= 2 * ENDPOINTS && await online(),
    90_000,
    "every simulated endpoint back after the restart",
  );
  await checkListed(agent.url, creds);
});
