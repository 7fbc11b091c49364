/**
 * `--endpoint` drives another endpoint through the agent's remote management:
 * root, on its own agent, offers a service on bob's endpoint and opens a port
 * mapping there with `ztm`; bob's agent applies both, and the mapping carries
 * data. A change bob's policy forbids comes back as a refusal, exit 1.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import { endpointPath, startMeshOf, withoutState } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("ztm --endpoint offers a service and maps a port on another endpoint, as root", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["root", "bob"]);
  const { root, bob } = m.agents;
  const asRoot = agentFlags(root.proc);
  await using echo = await startEchoServer();
  const offered = await ztmOk([
    "create",
    "service",
    "tcp/echo",
    "--host=127.0.0.1",
    `--port=${echo.port}`,
    `--endpoint=${bob.endpointName}`,
    ...asRoot,
  ]);
  assert(offered.includes(`on endpoint ${bob.endpointName} of mesh`), offered);
  const services = await api(bob.url, "GET", endpointPath(bob.endpointId, "services"));
  assertEquals(services.body.map((s: { name: string }) => s.name), ["echo"]);

  // A port on bob's endpoint that reaches bob's own service through the mesh.
  const port = await freePort();
  await eventually(
    async () => (await ztmOk(["get", "services", ...asRoot])).includes("tcp/echo"),
    15_000,
    "the hub lists tcp/echo",
  );
  await ztmOk([
    "create",
    "port",
    String(port),
    "--service=tcp/echo",
    `--via=${bob.endpointName}`,
    `--endpoint=${bob.endpointName}`,
    ...asRoot,
  ]);
  const ports = await api(bob.url, "GET", endpointPath(bob.endpointId, "ports"));
  assertEquals(ports.body.map(withoutState), [{
    ip: "127.0.0.1",
    proto: "tcp",
    port,
    target: { service: "echo", endpoint: bob.endpointName, user: "bob" },
  }]);
  await echoRoundTrip(port);

  // bob's policy lets remote callers listen on loopback only.
  const wide = await ztm([
    "create",
    "port",
    `0.0.0.0:${await freePort()}`,
    "--service=tcp/echo",
    `--endpoint=${bob.endpointName}`,
    ...asRoot,
  ]);
  assertEquals(wide.code, 1);
  assertEquals(
    wide.stderr,
    "ztm create port: Remote callers may not listen on 0.0.0.0 (policy listen: 127.0.0.1, ::1, localhost)\n",
  );
  const log = await ztmOk(["log", `--endpoint=${bob.endpointName}`, ...asRoot]);
  assert(
    /^\S+\s+root\s+\S+\s+POST\s+ports\/0\.0\.0\.0\/tcp\/\d+\s+403\s+Remote callers/m.test(log),
    log,
  );
});
