/**
 * A mesh, a service and a port mapping declared in the agent's `--config`
 * file: applied at start through the agent's API, and a second start with the
 * same file changes nothing.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ztm } from "../fixtures/cli_helpers.ts";
import { api, eventually, Harness, issueUser, rememberAgentToken } from "../fixtures/harness.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

Deno.test("an agent joins, offers and maps what its config file declares, and a restart changes nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  await using target = await startEchoServer();
  const mapped = await freePort();
  const dir = await h.tempDir("ztm-declared-");
  for (const user of ["alice", "bob"]) {
    const files = await issueUser(ca.url, user);
    await Deno.writeTextFile(join(dir, "ca.crt"), files.ca);
    await Deno.writeTextFile(join(dir, `${user}.crt`), files.certificate);
    await Deno.writeTextFile(join(dir, `${user}.key`), files.privateKey, { mode: 0o600 });
  }
  const mesh = (user: string) =>
    `[agent.meshes.work]\nhubs = ["${hub.address}"]\nca = "ca.crt"\ncertificate = "${user}.crt"\nkey = "${user}.key"\n`;
  await Deno.writeTextFile(
    join(dir, "bob.toml"),
    `[agent]\nname = "office"\n${
      mesh("bob")
    }\n[[agent.meshes.work.services]]\nservice = "tcp/web"\ntarget = "127.0.0.1:${target.port}"\nusers = ["alice"]\n`,
  );
  await Deno.writeTextFile(
    join(dir, "alice.toml"),
    `[agent]\nname = "laptop"\n${
      mesh("alice")
    }\n[[agent.meshes.work.ports]]\nlisten = "127.0.0.1:${mapped}"\nservice = "web"\n`,
  );
  const check = await ztm(["config", "check", join(dir, "alice.toml")]);
  assertEquals([check.code, check.stdout.includes("1 declared mesh")], [0, true], check.stderr);

  const start = async (user: string) => {
    const agent = await h.spawnService(user, "agent/main.ts", [
      "--listen=127.0.0.1:0",
      `--database=${join(dir, `${user}.db`)}`,
      `--config=${join(dir, `${user}.toml`)}`,
    ]);
    rememberAgentToken(agent.url, Deno.readTextFileSync(join(dir, `${user}.db.token`)).trim());
    return agent;
  };
  let bob = await start("bob");
  let alice = await start("alice");
  for (const a of [bob, alice]) {
    const applied = await a.waitForLog((l) => l.msg === "config applied");
    assert(Number(applied.count) >= 2, `joined and offered or mapped: ${JSON.stringify(applied)}`);
  }
  await eventually(
    () => echoRoundTrip(mapped, 2048).then(() => true),
    20_000,
    "the declared mapping",
  );
  const bobId = (await api(bob.url, "GET", "/api/meshes/work")).body.endpoint.id;
  const auditBefore = (await api(bob.url, "GET", `/api/meshes/work/endpoints/${bobId}/log`)).body;

  // The same files again: nothing to do, and the mapping works as before.
  await Promise.all([bob.stop(), alice.stop()]);
  bob = await start("bob");
  alice = await start("alice");
  for (const a of [bob, alice]) {
    const applied = await a.waitForLog((l) => l.msg === "config applied");
    assertEquals(applied.count, 0, `${a.name}: nothing changed on the second start`);
    assert(!a.logs.some((l) => l.msg === "config not fully applied"), a.tail());
  }
  await eventually(() => echoRoundTrip(mapped, 2048).then(() => true), 20_000, "after restart");
  const auditAfter = (await api(bob.url, "GET", `/api/meshes/work/endpoints/${bobId}/log`)).body;
  assertEquals(
    JSON.stringify(auditAfter).length,
    JSON.stringify(auditBefore).length,
    "no change was made, so none was logged",
  );
});

Deno.test("an agent refuses a config whose declarations are wrong, naming each line", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-declared-");
  const path = join(dir, "agent.toml");
  await Deno.writeTextFile(
    path,
    `[agent.meshes.work]\nhubs = ["hub:88888"]\nca = "ca.crt"\n\n[[agent.meshes.work.services]]\nservice = "udp/x y"\ntarget = "127.0.0.1:22"\n\n[[agent.meshes.work.ports]]\nlisten = "127.0.0.1:0"\nservice = "web"\n`,
  );
  const agent = h.spawn("agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${join(dir, "a.db")}`,
    `--config=${path}`,
  ]);
  assertEquals((await agent.child.status).code, 2);
  await agent.stop();
  const out = agent.raw.join("\n");
  assert(out.includes(`${path}:1: agent.meshes.work: hub "hub:88888"`), out);
  assert(out.includes(`${path}:1: agent.meshes.work: certificate (a file) is required`), out);
  assert(out.includes(`${path}:5: agent.meshes.work.services: service must be`), out);
  assert(
    out.includes(`${path}:9: agent.meshes.work.ports: listen: a port mapping needs a port`),
    out,
  );
  const check = await ztm(["config", "check", path]);
  assertEquals(check.code, 1);
  assert(check.stderr.includes(`${path}:5:`), check.stderr);
});
