/**
 * The typed client as a user's Deno script uses it: a script in its own
 * directory, with its own `deno.json` that imports `@ztm/agent` and
 * `@ztm/shared` from JSR and links them to this checkout (`links`), as a
 * script would before the packages are published. It joins a mesh, maps a
 * port, and meets a refusal as the shared error class.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { api, Harness, issueUser, ROOT, run } from "../fixtures/harness.ts";
import { addService, MESH, startMeshOf, withoutState } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";

const SCRIPT = `
import { AgentClient } from "@ztm/agent/client";
import { NotFound } from "@ztm/shared/errors";

const [agentUrl, tokenFile, hub, dir, port] = Deno.args;
const agent = AgentClient.withTokenFile(agentUrl, tokenFile);
const read = (name: string) => Deno.readTextFileSync(\`\${dir}/\${name}\`);

const joined = await agent.join("${MESH}", {
  ca: read("ca.crt"),
  agent: { name: "script", certificate: read("alice.crt"), privateKey: read("alice.key") },
  bootstraps: [hub],
});
while (!(await agent.mesh("${MESH}")).status?.connected) {
  await new Promise((r) => setTimeout(r, 100));
}
const mapping = await agent.openPort("${MESH}", joined.endpoint.id, {
  ip: "127.0.0.1",
  proto: "tcp",
  port: Number(port),
}, { service: "echo" });
const endpoints = await agent.endpoints("${MESH}", { q: "bob" });
let refusal = {};
try {
  await agent.mesh("elsewhere");
} catch (err) {
  if (!(err instanceof NotFound)) throw err;
  refusal = { class: err.constructor.name, status: err.status, code: err.code, message: err.message };
}
console.log(JSON.stringify({ user: joined.user, mapping, endpoints: endpoints.items.map((e) => e.name), refusal }));
`;

Deno.test("a separate Deno script imports the client, joins a mesh and maps a port with it", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob"]);
  await using echo = await startEchoServer();
  await addService(m.agents.bob, "echo", echo.port, ["alice"]);
  const agent = await h.startAgent({ name: "agent-alice" });
  const project = await userProject(h, m.ca.url);
  Deno.writeTextFileSync(join(project, "script.ts"), SCRIPT);
  // The client's types check in the user's project, as an editor would check them.
  await run(Deno.execPath(), ["check", "script.ts"], { cwd: project });
  const port = await freePort();
  const out = await run(Deno.execPath(), [
    "run",
    "--allow-all",
    "script.ts",
    agent.url,
    `${agent.database}.token`,
    m.hub.address,
    project,
    String(port),
  ], { cwd: project });
  const result = JSON.parse(out.stdout);
  assertEquals(result.user, "alice");
  assertEquals(withoutState(result.mapping), {
    ip: "127.0.0.1",
    proto: "tcp",
    port,
    target: { service: "echo", user: "bob" },
  });
  assertEquals(result.endpoints, ["bob-ep"]);
  assertEquals(result.refusal, {
    class: "NotFound",
    status: 404,
    code: "unknown_mesh",
    message: 'Unknown mesh "elsewhere"',
  });
  await echoRoundTrip(port);
  assertEquals(echo.accepted, 1);
  const ports = await api(agent.url, "GET", `/api/meshes/${MESH}/endpoints/script/ports`);
  assertEquals(ports.body.map(withoutState), [withoutState(result.mapping)]);
  assert(!out.stderr.includes("error"), out.stderr);
});

/**
 * A user's script directory: alice's `ca.crt`, `alice.crt` and `alice.key`
 * from the CA, and a `deno.json` importing the packages from JSR, linked here.
 */
async function userProject(h: Harness, caUrl: string): Promise<string> {
  const project = await h.tempDir("ztm-cli-script-");
  const alice = await issueUser(caUrl, "alice");
  Deno.writeTextFileSync(join(project, "ca.crt"), alice.ca);
  Deno.writeTextFileSync(join(project, "alice.crt"), alice.certificate);
  Deno.writeTextFileSync(join(project, "alice.key"), alice.privateKey, { mode: 0o600 });
  Deno.writeTextFileSync(
    join(project, "deno.json"),
    JSON.stringify({
      imports: { "@ztm/agent": "jsr:@ztm/agent@^0.1.0", "@ztm/shared": "jsr:@ztm/shared@^0.1.0" },
      links: [join(ROOT, "agent"), join(ROOT, "shared")],
    }),
  );
  return project;
}

/** The script of the README's "Scripting with the typed client", with its addresses replaced. */
function readmeScript(replacements: [string, string][]): string {
  const readme = Deno.readTextFileSync(join(ROOT, "README.md"));
  const section = readme.slice(readme.indexOf("## Scripting with the typed client"));
  let script = /```ts\n([\s\S]*?)```/.exec(section)![1];
  for (const [from, to] of replacements) {
    assert(script.includes(from), `the README script has ${from}`);
    script = script.replaceAll(from, to);
  }
  return script;
}

Deno.test("the README's client script joins a mesh and maps a port that carries data", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob"]);
  await using sshd = await startEchoServer();
  await addService(m.agents.bob, "ssh", sshd.port, ["alice"]);
  const agent = await h.startAgent({ name: "agent-alice" });
  const project = await userProject(h, m.ca.url);
  const port = await freePort();
  Deno.writeTextFileSync(
    join(project, "script.ts"),
    readmeScript([
      ['"127.0.0.1:7777"', JSON.stringify(agent.url)],
      ["`${home}/ztm.db.token`", JSON.stringify(`${agent.database}.token`)],
      ['"hub.example.com:8888"', JSON.stringify(m.hub.address)],
      ["port: 2222", `port: ${port}`],
    ]),
  );
  await run(Deno.execPath(), ["check", "script.ts"], { cwd: project });
  const out = await run(Deno.execPath(), ["run", "--allow-all", "script.ts"], { cwd: project });
  const listed = JSON.parse(out.stdout);
  assertEquals(listed.map(withoutState), [
    { ip: "127.0.0.1", proto: "tcp", port, target: { service: "ssh", user: "bob" } },
  ]);
  assertEquals(listed[0].state.health, "ok");
  await echoRoundTrip(port);
  assertEquals(sshd.accepted, 1);
});
