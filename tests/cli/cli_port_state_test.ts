/**
 * Broken port mappings say so: a mapping to a mistyped service, to a service
 * this user may not use, or to an offline provider is made with a warning on
 * `ztm create port`, and `ztm get ports` shows each mapping's live state (ok,
 * nobody offers it, no provider online, not allowed, target refusing) with
 * its last error, open connections and bytes each way. `tcp/NAME` and `NAME`
 * name the same service in the CLI and the API.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm, ztmJson, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, type ApiBody, eventually, Harness } from "../fixtures/harness.ts";
import { addService, endpointPath, MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort, openConnection, randomBytes, startEchoServer } from "../fixtures/net_helpers.ts";

/** The row of `ztm get ports` (plain text) that listens on `port`. */
function rowOf(table: string, port: number): string {
  const row = table.split("\n").find((l) => l.startsWith(`127.0.0.1:${port} `));
  assert(row, `no row for port ${port} in:\n${table}`);
  return row;
}

Deno.test("ztm create port warns about mappings that cannot work, and ztm get ports shows each one's live state", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob", "carol"]);
  const { alice, bob, carol } = m.agents;
  await using echo = await startEchoServer();
  const deadPort = await freePort(); // nothing listens there
  await addService(bob, "ssh", echo.port, ["alice"]);
  await addService(bob, "secret", echo.port, []); // bob and root only
  await addService(bob, "web", deadPort, ["*"]);
  await addService(carol, "files", echo.port, ["*"]);
  const asAlice = agentFlags(alice.proc);
  const ports = {
    ok: await freePort(),
    typo: await freePort(),
    secret: await freePort(),
    web: await freePort(),
    offline: await freePort(),
  };

  // Both spellings work: `tcp/ssh` in the API body, `ssh` on the command line.
  const viaApi = await api(
    alice.url,
    "POST",
    endpointPath(alice.endpointId, `ports/127.0.0.1/tcp/${ports.ok}`),
    { target: { service: "tcp/ssh" } },
  );
  assertEquals(viaApi.status, 201, JSON.stringify(viaApi.body));
  assertEquals(viaApi.body.target, { service: "ssh", user: "bob" });
  assertEquals(viaApi.body.warning, undefined);
  assertEquals(viaApi.body.state.health, "ok");
  const bare = await ztm(["create", "port", String(ports.web), "--service=web", ...asAlice]);
  assertEquals(bare.code, 0, bare.stderr);
  assert(bare.stdout.includes(`→ tcp/web`), bare.stdout);
  assertEquals(bare.stderr, "", "a mapping that can work has no warning");

  // Mappings that cannot work are made (exit 0), with a warning that says why.
  const typo = await ztm(["create", "port", String(ports.typo), "--service=tcp/shh", ...asAlice]);
  assertEquals(typo.code, 0, typo.stderr);
  assertEquals(typo.stderr, "Warning: Nobody offers a service tcp/shh\n");
  const secret = await ztm([
    "create",
    "port",
    String(ports.secret),
    "--service=secret",
    ...asAlice,
  ]);
  assertEquals(secret.code, 0, secret.stderr);
  assertEquals(
    secret.stderr,
    `Warning: User "alice" may not use tcp/secret of "bob"; ask them to add alice to its users\n`,
  );
  assertEquals((await carol.proc.stop()).code, 0);
  await eventually(
    async () => {
      const res = await api(alice.url, "GET", `/api/meshes/${MESH}/endpoints/${carol.endpointId}`);
      return res.body.online === false;
    },
    15_000,
    "carol's endpoint offline",
  );
  const offline = await ztm([
    "create",
    "port",
    String(ports.offline),
    "--service=files",
    ...asAlice,
  ]);
  assertEquals(offline.code, 0, offline.stderr);
  assertEquals(
    offline.stderr,
    "Warning: No provider of tcp/files is online (carol-ep offline)\n",
  );

  // Traffic: one connection through ssh stays open; one through web finds its target refusing.
  const conn = await openConnection(ports.ok);
  const data = randomBytes(5000);
  assertEquals((await conn.exchange(data)).length, 5000);
  const refused = await openConnection(ports.web);
  await refused.ended;
  refused.close();
  const denied = await openConnection(ports.secret);
  await denied.ended;
  denied.close();

  const states = await eventually(
    async () => {
      const list = await ztmJson(["get", "ports", ...asAlice]) as ApiBody[];
      const by = Object.fromEntries(list.map((p) => [p.port, p.state]));
      return by[ports.web]?.health === "target_refusing" && by[ports.ok]?.open === 1 ? by : null;
    },
    15_000,
    "the states after the traffic",
  );
  assertEquals(states[ports.ok].health, "ok");
  assertEquals([states[ports.ok].bytesUp, states[ports.ok].bytesDown], [5000, 5000]);
  assertEquals(states[ports.ok].connections, 1);
  assertEquals(states[ports.typo].health, "unknown_service");
  assertEquals(states[ports.secret].health, "not_allowed");
  assertEquals(states[ports.offline].health, "no_provider_online");
  assertEquals(states[ports.web].lastError.code, "target_unreachable");
  assert(
    /^Service tcp\/web target 127\.0\.0\.1:\d+ is unreachable/.test(states[ports.web].message),
    states[ports.web].message,
  );
  assert(!Number.isNaN(Date.parse(states[ports.web].lastError.time)));

  // The same in the table.
  const table = await ztmOk(["get", "ports", ...asAlice]);
  assert(
    /^LISTEN\s+SERVICE\s+USER\s+VIA\s+STATE\s+OPEN\s+UP\s+DOWN\s+LAST ERROR$/m.test(table),
    table,
  );
  assert(/\s+ok\s+1\s+4\.9 KiB\s+4\.9 KiB\s+-$/.test(rowOf(table, ports.ok)), table);
  assert(/ unknown service\s+0\s/.test(rowOf(table, ports.typo)), table);
  assert(rowOf(table, ports.typo).endsWith("Nobody offers a service tcp/shh"), table);
  assert(rowOf(table, ports.secret).includes(" not allowed "), table);
  assert(rowOf(table, ports.offline).includes(" no provider online "), table);
  assert(rowOf(table, ports.web).includes(" target refusing "), table);
  assert(/is unreachable: .* \(\d{4}-\d\d-\d\dT/.test(rowOf(table, ports.web)), table);

  // On bob's side, the services' states: web's target refuses, secret refused alice.
  const bobServices = await api(bob.url, "GET", endpointPath(bob.endpointId, "services"));
  const svc = Object.fromEntries(bobServices.body.map((s: ApiBody) => [s.name, s.state]));
  assertEquals(svc.web.health, "target_refusing");
  assertEquals(svc.ssh.health, "ok");
  assertEquals([svc.ssh.open, svc.ssh.bytesUp, svc.ssh.bytesDown], [1, 5000, 5000]);
  assertEquals(svc.secret.lastError.code, "access_denied");
  assertEquals(svc.secret.lastError.message, `User "alice" may not use service tcp/secret`);
  // …and in bob's table of his services: open connections and bytes each way.
  const bobTable = await ztmOk([
    "get",
    "services",
    `--endpoint=${bob.endpointId}`,
    ...agentFlags(bob.proc),
  ]);
  assert(
    /^SERVICE\s+TARGET\s+USERS\s+STATE\s+OPEN\s+UP\s+DOWN\s+LAST ERROR$/m.test(bobTable),
    bobTable,
  );
  const sshRow = bobTable.split("\n").find((l) => l.startsWith("tcp/ssh "));
  assert(sshRow && /\s+ok\s+1\s+4\.9 KiB\s+4\.9 KiB\s+-$/.test(sshRow), bobTable);
  assert(bobTable.split("\n").some((l) => /^tcp\/web .* target refusing /.test(l)), bobTable);

  // Closing the connection leaves none open.
  conn.close();
  await eventually(
    async () => {
      const list = await ztmJson(["get", "ports", ...asAlice]) as ApiBody[];
      return list.find((p) => p.port === ports.ok)?.state.open === 0;
    },
    10_000,
    "the connection counted closed",
  );
});
