/**
 * `ztm … --json` prints exactly what the agent's API answers, for every
 * command that reads or changes an agent, so scripts can rely on the API's
 * documented shapes.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztmJson } from "../fixtures/cli_helpers.ts";
import { api, type ApiBody, Harness } from "../fixtures/harness.ts";
import { endpointPath, MESH, startMeshOf, withoutState } from "../fixtures/mesh_fixture.ts";
import { freePort, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("ztm --json output parses and equals the API's answer", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  const asAlice = agentFlags(alice.proc);
  const asBob = agentFlags(bob.proc);
  const get = async (agent: { url: string }, path: string): Promise<ApiBody> => {
    const res = await api(agent.url, "GET", path);
    assertEquals(res.status, 200, JSON.stringify(res.body));
    return res.body;
  };

  // Changes answer with what the API answers: the created or deleted thing.
  await using echo = await startEchoServer();
  const service = await ztmJson([
    "create",
    "service",
    "tcp/echo",
    "--host=127.0.0.1",
    `--port=${echo.port}`,
    "--users=alice,carol",
    "--strict",
    ...asBob,
  ]);
  assertEquals(service, {
    proto: "tcp",
    name: "echo",
    host: "127.0.0.1",
    port: echo.port,
    users: ["alice", "carol"],
    strict: true,
  });
  assertEquals(
    [service],
    (await get(bob, endpointPath(bob.endpointId, "services"))).map(withoutState),
  );
  const port = await freePort();
  const mapping = await ztmJson([
    "create",
    "port",
    String(port),
    "--service=tcp/echo",
    "--via=bob-ep",
    "--user=bob",
    ...asAlice,
  ]);
  assertEquals(withoutState(mapping), {
    ip: "127.0.0.1",
    proto: "tcp",
    port,
    target: { service: "echo", user: "bob", endpoint: "bob-ep" },
  });

  // Reads print the API's answer as it is.
  const reads: [string[], { url: string }, string][] = [
    [["get", "meshes", ...asAlice], alice, "/api/meshes"],
    [["status", ...asAlice], alice, "/api/meshes"],
    [["get", "endpoints", ...asAlice], alice, `/api/meshes/${MESH}/endpoints`],
    [
      ["get", "endpoints", "--endpoint=bob-ep", ...asAlice],
      alice,
      `/api/meshes/${MESH}/endpoints/bob-ep`,
    ],
    [["get", "meshes", `--mesh=${MESH}`, ...asAlice], alice, `/api/meshes/${MESH}`],
    [["get", "endpoints", "--query=bob", ...asAlice], alice, `/api/meshes/${MESH}/endpoints?q=bob`],
    [["get", "services", ...asAlice], alice, `/api/meshes/${MESH}/services`],
    [["get", "ports", ...asAlice], alice, endpointPath(alice.endpointId, "ports")],
    [
      ["get", "services", `--endpoint=${bob.endpointId}`, ...asBob],
      bob,
      endpointPath(bob.endpointId, "services"),
    ],
    [["log", ...asAlice], alice, endpointPath(alice.endpointId, "log")],
    [["log", "--limit=1", ...asBob], bob, `${endpointPath(bob.endpointId, "log")}?limit=1`],
  ];
  for (const [args, agent, path] of reads) {
    assertEquals(await ztmJson(args), await get(agent, path), args.slice(0, 3).join(" "));
  }
  const endpoints = await ztmJson(["get", "endpoints", ...asAlice]) as ApiBody;
  assertEquals(endpoints.items.length, 2);
  const log = await ztmJson(["log", ...asAlice]) as ApiBody;
  assertEquals(log.items[0].path, `ports/127.0.0.1/tcp/${port}`);
  const login = await ztmJson(["dashboard", ...asAlice]) as { url: string };
  assert(login.url.startsWith(`${alice.url}/login?code=`), login.url);

  const closed = await ztmJson(["delete", "port", `127.0.0.1:${port}`, ...asAlice]);
  assertEquals(closed, withoutState(mapping));
  assertEquals(await ztmJson(["delete", "service", "tcp/echo", ...asBob]), service);
  const before = await get(alice, `/api/meshes/${MESH}`);
  const left = await ztmJson(["leave", MESH, ...asAlice]);
  assertEquals(left, { ...before, status: null });
});
