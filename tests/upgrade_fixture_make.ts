/**
 * Makes the state of a release for `upgrade_test.ts`: a CA database, a hub's
 * data directory and two agents' databases written by the ztm of the checkout
 * this runs in, with a mesh, a service, a port mapping, a policy and audit
 * entries in them. Run it from a checkout of the release:
 *
 * ```sh
 * git worktree add /tmp/rel v0.1.0 && cp tests/upgrade_fixture_make.ts /tmp/rel/tests/
 * cd /tmp/rel && deno run -A tests/upgrade_fixture_make.ts /path/to/tests/fixtures/release-0.1.0
 * ```
 *
 * The keys in the fixture are throwaway test keys, made for it and used nowhere else.
 */
import { join } from "node:path";
import { api, eventually, Harness, issueUser, joinMesh } from "./harness.ts";

const out = Deno.args[0];
if (!out) throw new Error("usage: upgrade_fixture_make.ts OUT_DIR");
await Deno.mkdir(out, { recursive: true });
const MESH = "work";
/**
 * Fixed ports (the state names them), below Linux's ephemeral range (32768–60999) so that no
 * other test's port 0 lands on them.
 */
const SERVICE_PORT = 29611;
const MAPPED_PORT = 29612;
const HUB_PORT = 29613;
const HUB_DATA_PORT = 29614;

{
  await using h = new Harness();
  const ca = await h.startCa({ dir: await h.tempDir() });
  const hub = await h.startHub(ca, {
    args: [`--listen=127.0.0.1:${HUB_PORT}`, `--data-listen=127.0.0.1:${HUB_DATA_PORT}`],
  });
  const alice = await h.startAgent({ name: "alice" });
  const bob = await h.startAgent({ name: "bob" });
  const joinedA = await joinMesh(
    alice.url,
    MESH,
    await issueUser(ca.url, "alice"),
    hub.address,
    "laptop",
  );
  const joinedB = await joinMesh(
    bob.url,
    MESH,
    await issueUser(ca.url, "bob"),
    hub.address,
    "office",
  );
  const office = joinedB.endpoint.id;
  const laptop = joinedA.endpoint.id;
  const svc = await api(
    bob.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${office}/services/tcp/web`,
    {
      host: "127.0.0.1",
      port: SERVICE_PORT,
      users: ["alice"],
    },
  );
  if (svc.status !== 201) throw new Error(`service: ${JSON.stringify(svc.body)}`);
  await eventually(
    async () => {
      const r = await api(alice.url, "GET", `/api/meshes/${MESH}/services`);
      return JSON.stringify(r.body).includes('"web"');
    },
    15_000,
    "alice sees tcp/web",
  );
  const port = await api(
    alice.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${laptop}/ports/127.0.0.1/tcp/${MAPPED_PORT}`,
    { target: { service: "web" } },
  );
  if (port.status !== 201) throw new Error(`port: ${JSON.stringify(port.body)}`);
  await Promise.all([alice.stop(), bob.stop(), hub.stop(), ca.stop()]);
  const copy = async (from: string, to: string) => {
    await Deno.copyFile(from, join(out, to));
    await Deno.chmod(join(out, to), 0o600);
  };
  await copy(ca.database, "ca.db");
  await copy(`${ca.database}.token`, "ca.db.token");
  await Deno.mkdir(join(out, "hub"), { mode: 0o700 });
  for (const e of Deno.readDirSync(hub.dir)) {
    if (e.isFile) await copy(join(hub.dir, e.name), join("hub", e.name));
  }
  await copy(alice.database, "alice.db");
  await copy(`${alice.database}.token`, "alice.db.token");
  await copy(bob.database, "bob.db");
  await copy(`${bob.database}.token`, "bob.db.token");
  await Deno.writeTextFile(
    join(out, "fixture.json"),
    JSON.stringify(
      {
        mesh: MESH,
        servicePort: SERVICE_PORT,
        mappedPort: MAPPED_PORT,
        hubPort: HUB_PORT,
        hubDataPort: HUB_DATA_PORT,
        alice: { endpoint: laptop, name: "laptop" },
        bob: { endpoint: office, name: "office" },
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`fixture written to ${out}`);
}
