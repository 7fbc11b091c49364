/**
 * Upgrading a running mesh in the documented order (CA, hub, agents): the
 * state written by release 0.1.0 (`tests/fixtures/release-0.1.0`, made by
 * `upgrade_fixture_make.ts` from that release) opens with this ztm, migrates,
 * and serves the same mesh: certificates, the hub's identity, the endpoints,
 * the service and the port mapping, which carries traffic again.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { api, eventually, Harness, rememberAgentToken, ROOT } from "../fixtures/harness.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";

const FIXTURE = join(ROOT, "tests/fixtures/release-0.1.0");

interface Fixture {
  mesh: string;
  servicePort: number;
  mappedPort: number;
  hubPort: number;
  hubDataPort: number;
  alice: { endpoint: string; name: string };
  bob: { endpoint: string; name: string };
}

/** Copies the fixture into `dir` with the modes a real installation has (git keeps no modes). */
async function copyFixture(dir: string): Promise<void> {
  const walk = async (from: string, to: string) => {
    for await (const e of Deno.readDir(from)) {
      if (e.isDirectory) {
        await Deno.mkdir(join(to, e.name), { mode: 0o700 });
        await walk(join(from, e.name), join(to, e.name));
      } else {
        await Deno.copyFile(join(from, e.name), join(to, e.name));
        await Deno.chmod(join(to, e.name), 0o600);
      }
    }
  };
  await walk(FIXTURE, dir);
}

Deno.test("a mesh written by release 0.1.0 upgrades in place: CA, hub, then agents, and the mapping works again", async () => {
  const fx: Fixture = JSON.parse(await Deno.readTextFile(join(FIXTURE, "fixture.json")));
  await using h = new Harness();
  const dir = await h.tempDir("ztm-upgrade-");
  await copyFixture(dir);
  await using target = await startEchoServer(fx.servicePort);

  // 1. The CA opens its old database: same CA, the users it issued are listed, and it still issues.
  const ca = await h.startCa({ dir, args: [`--database=${join(dir, "ca.db")}`] });
  const listed = await (await fetch(`${ca.url}/api/certificates`)).json();
  const names = (listed as { name: string }[]).map((c) => c.name);
  assert(names.includes("alice") && names.includes("bob"), JSON.stringify(names));
  const oldCa = await Deno.readTextFile(join(dir, "hub", "ca.crt"));
  assertEquals((await (await fetch(`${ca.url}/api/certificates/ca`)).text()).trim(), oldCa.trim());
  const carol = await fetch(`${ca.url}/api/certificates/carol`, { method: "POST" });
  assertEquals(carol.status, 201);
  await carol.text();

  // 2. The hub keeps its data directory and address.
  await h.startHub({ url: ca.url, database: join(dir, "ca.db") }, {
    dir: join(dir, "hub"),
    args: [`--listen=127.0.0.1:${fx.hubPort}`, `--data-listen=127.0.0.1:${fx.hubDataPort}`],
  });

  // 3. The agents open their databases, reconnect by themselves and keep what they had.
  const agent = async (name: "alice" | "bob") => {
    const a = await h.spawnService(name, "agent/main.ts", [
      "--listen=127.0.0.1:0",
      `--database=${join(dir, `${name}.db`)}`,
    ]);
    rememberAgentToken(a.url, Deno.readTextFileSync(join(dir, `${name}.db.token`)).trim());
    return a;
  };
  const bob = await agent("bob");
  const alice = await agent("alice");
  for (const [a, who] of [[alice, fx.alice], [bob, fx.bob]] as const) {
    const meshes = await api(a.url, "GET", "/api/meshes");
    assertEquals(meshes.status, 200, JSON.stringify(meshes.body));
    assert(JSON.stringify(meshes.body).includes(`"${fx.mesh}"`), JSON.stringify(meshes.body));
    await eventually(
      async () => {
        const eps = await api(a.url, "GET", `/api/meshes/${fx.mesh}/endpoints`);
        return JSON.stringify(eps.body).includes(`"${who.name}"`);
      },
      20_000,
      `${who.name} back at the hub`,
    );
  }
  // An endpoint keeps its name; its id may have been migrated (key-bound ids), so ask for it.
  const idOf = async (a: { url: string }) =>
    (await api(a.url, "GET", `/api/meshes/${fx.mesh}`)).body.endpoint.id as string;
  const [bobId, aliceId] = [await idOf(bob), await idOf(alice)];
  const services = await api(
    bob.url,
    "GET",
    `/api/meshes/${fx.mesh}/endpoints/${bobId}/services`,
  );
  assertEquals(services.status, 200, JSON.stringify(services.body));
  assert(JSON.stringify(services.body).includes('"web"'), JSON.stringify(services.body));
  const ports = await api(
    alice.url,
    "GET",
    `/api/meshes/${fx.mesh}/endpoints/${aliceId}/ports`,
  );
  assert(JSON.stringify(ports.body).includes(String(fx.mappedPort)), JSON.stringify(ports.body));
  const log = await api(bob.url, "GET", `/api/meshes/${fx.mesh}/endpoints/${bobId}/log`);
  assertEquals(log.status, 200, JSON.stringify(log.body));
  assert(JSON.stringify(log.body).includes("web"), "the audit log kept its entries");

  // The restored mapping carries traffic to bob's service again.
  await eventually(
    () => echoRoundTrip(fx.mappedPort, 4096).then(() => true),
    20_000,
    "a round trip through the restored mapping",
  );
  assert(target.accepted > 0);
});
