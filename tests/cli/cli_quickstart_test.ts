/**
 * The README's walkthrough done with the `ztm` command line only: `ztm ca`,
 * `ztm hub` and two `ztm agent`s as real processes, `ztm cert new` for the
 * users' files, `ztm join`, `ztm create service` on bob's office endpoint and
 * `ztm create port` on alice's laptop — and bytes through the mapping.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm, ztmJson, ztmOk } from "../fixtures/cli_helpers.ts";
import { eventually, Harness } from "../fixtures/harness.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("the README walkthrough works with ztm commands alone, and a port mapping carries data", async () => {
  await using h = new Harness();
  const files = await h.tempDir("ztm-cli-files-");
  const caDir = await h.tempDir("ztm-cli-ca-");
  const ca = await h.spawnService("ca", "cli/main.ts", [
    "ca",
    "--listen=127.0.0.1:0",
    `--database=${join(caDir, "ca.db")}`,
  ]);
  const hub = await h.spawnService("hub", "cli/main.ts", [
    "hub",
    `--ca=127.0.0.1:${ca.port}`,
    "--listen=127.0.0.1:0",
    "--data-listen=127.0.0.1:0",
    "--names=localhost",
    `--data-dir=${await h.tempDir("ztm-cli-hub-")}`,
    `--ca-token-file=${join(caDir, "ca.db.token")}`,
  ]);
  const startAgent = async (name: string) => {
    const dir = await h.tempDir(`ztm-cli-${name}-`);
    const proc = await h.spawnService(name, "cli/main.ts", [
      "agent",
      "--listen=127.0.0.1:0",
      `--database=${join(dir, "ztm.db")}`,
    ]);
    return Object.assign(proc, { database: join(dir, "ztm.db") });
  };
  const [office, laptop] = await Promise.all([startAgent("office"), startAgent("laptop")]);

  // Certificates: three files per user, the key 0600.
  for (const user of ["alice", "bob"]) {
    const out = await ztmOk(["cert", "new", user, `--ca-url=${ca.url}`, `--dir=${files}`]);
    assert(out.includes(`${user}.key`), out);
    assertEquals(Deno.statSync(join(files, `${user}.key`)).mode! & 0o777, 0o600);
    assert(Deno.readTextFileSync(join(files, `${user}.crt`)).includes("BEGIN CERTIFICATE"));
  }
  assert(Deno.readTextFileSync(join(files, "ca.crt")).includes("BEGIN CERTIFICATE"));
  const listed = await ztmOk(["cert", "list", `--ca-url=${ca.url}`]);
  assert(/^alice\s+user\s/m.test(listed) && /^bob\s+user\s/m.test(listed), listed);

  // Each endpoint joins the mesh "work" with its user's files.
  const joinAs = (agent: typeof office, user: string, name: string) =>
    ztmOk([
      "join",
      "work",
      `--hub=localhost:${hub.port}`,
      `--ca=${join(files, "ca.crt")}`,
      `--cert=${join(files, `${user}.crt`)}`,
      `--key=${join(files, `${user}.key`)}`,
      `--name=${name}`,
      ...agentFlags(agent),
    ]);
  assert((await joinAs(office, "bob", "office")).includes('Joined mesh "work" as user bob'));
  assert((await joinAs(laptop, "alice", "laptop")).includes("as user alice"));
  for (const agent of [office, laptop]) {
    await eventually(
      async () => {
        const meshes = await ztmJson(["get", "meshes", ...agentFlags(agent)]) as {
          status: { connected: boolean } | null;
        }[];
        return meshes[0]?.status?.connected;
      },
      20_000,
      `${agent.name} connected`,
    );
  }

  // bob offers the "SSH server" (an echo server here) to alice; alice maps a port to it.
  await using sshd = await startEchoServer();
  const offered = await ztmOk([
    "create",
    "service",
    "tcp/ssh",
    "--host=127.0.0.1",
    `--port=${sshd.port}`,
    "--users=alice",
    ...agentFlags(office),
  ]);
  assert(offered.includes(`tcp/ssh → 127.0.0.1:${sshd.port} on endpoint office`), offered);
  await eventually(
    async () => (await ztmOk(["get", "services", ...agentFlags(laptop)])).includes("tcp/ssh"),
    15_000,
    "laptop sees tcp/ssh",
  );
  const port = await freePort();
  const mapped = await ztmOk([
    "create",
    "port",
    `127.0.0.1:${port}`,
    "--service=tcp/ssh",
    ...agentFlags(laptop),
  ]);
  assert(mapped.includes(`Port 127.0.0.1:${port} on endpoint laptop → tcp/ssh`), mapped);
  await echoRoundTrip(port, 256 * 1024);
  assertEquals(sshd.accepted, 1);

  // The tables tell what is there.
  const endpoints = await ztmOk(["get", "endpoints", ...agentFlags(laptop)]);
  assert(/^NAME\s+ID\s+USER\s+STATE/.test(endpoints), endpoints);
  assert(/^office\s+\S+\s+bob\s+online\s/m.test(endpoints), endpoints);
  assert(/^laptop \(this one\)\s+\S+\s+alice\s+online\s/m.test(endpoints), endpoints);
  const services = await ztmOk(["get", "services", ...agentFlags(laptop)]);
  assert(/^tcp\/ssh\s+bob\s+office\s+alice$/m.test(services), services);
  // alice may not look into bob's endpoint; bob's own agent shows its services.
  const nosy = await ztm(["get", "services", "--endpoint=office", ...agentFlags(laptop)]);
  assertEquals(nosy.code, 1);
  assertEquals(
    nosy.stderr,
    'ztm get: User "alice" may not manage endpoint "office"; only its user "bob" and root may\n',
  );
  const officeServices = await ztmOk([
    "get",
    "services",
    "--endpoint=office",
    ...agentFlags(office),
  ]);
  assert(
    new RegExp(`^tcp/ssh\\s+127\\.0\\.0\\.1:${sshd.port}\\s+alice\\s+ok\\s+\\d+\\s`, "m").test(
      officeServices,
    ),
    officeServices,
  );
  const ports = await ztmOk(["get", "ports", ...agentFlags(laptop)]);
  assert(
    new RegExp(`^127\\.0\\.0\\.1:${port}\\s+tcp/ssh\\s+bob\\s+-\\s+ok\\s+0\\s`, "m").test(ports),
    ports,
  );
  const status = await ztmOk(["status", ...agentFlags(laptop)]);
  assert(/^work\s+alice\s+laptop\s+connected\s+localhost:\d+\s/m.test(status), status);
  assert(/expires \d{4}-\d\d-\d\d \(in 36\d days\)/.test(status), status);
  const log = await ztmOk(["log", ...agentFlags(laptop)]);
  assert(
    new RegExp(
      `^\\S+\\s+alice\\s+local\\s+POST\\s+ports/127\\.0\\.0\\.1/tcp/${port}\\s+201\\s+ok$`,
      "m",
    ).test(log),
    log,
  );

  // A dashboard login URL that works once.
  const url = (await ztmOk(["dashboard", ...agentFlags(laptop)])).trim();
  assert(url.startsWith(`http://127.0.0.1:${laptop.port}/login?code=`), url);
  const login = await fetch(url, { redirect: "manual" });
  await login.body?.cancel();
  assertEquals(login.status, 200);
  assert(login.headers.get("set-cookie")?.startsWith("ztm_session_"), "the login sets the cookie");

  // Taking it down again: the port closes, the service goes, alice's certificate is revoked.
  await ztmOk(["delete", "port", String(port), ...agentFlags(laptop)]);
  const refused = await Deno.connect({ port }).then((c) => (c.close(), false), () => true);
  assert(refused, "the mapping's port is closed");
  await ztmOk(["delete", "service", "tcp/ssh", ...agentFlags(office)]);
  assertEquals(await ztmJson(["get", "services", "--endpoint=office", ...agentFlags(office)]), []);
  const revoked = await ztmOk(["cert", "revoke", "alice", `--ca-url=${ca.url}`]);
  assert(revoked.startsWith("Revoked the certificate of alice"), revoked);
  await eventually(
    async () => (await ztmOk(["status", ...agentFlags(laptop)])).includes("disconnected"),
    15_000,
    "alice's endpoint is cut off",
  );
  const left = await ztm(["leave", "work", ...agentFlags(laptop)]);
  assertEquals(left.code, 0, left.stderr);
  assert(left.stdout.includes('Left mesh "work"'), left.stdout);
  assertEquals(await ztmJson(["get", "meshes", ...agentFlags(laptop)]), []);
});
