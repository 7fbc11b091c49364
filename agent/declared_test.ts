import assert from "node:assert/strict";
import { join } from "node:path";
import { readConfigFile } from "@ztm/shared/config";
import { readDeclarations } from "./declared.ts";

/** The declarations of a config file with `toml` in a new folder, and that folder. */
function declarationsOf(toml: string) {
  const dir = Deno.makeTempDirSync();
  try {
    const path = join(dir, "ztm.toml");
    Deno.writeTextFileSync(path, toml);
    return { dir, ...readDeclarations(readConfigFile(path)) };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("a declared mesh is read with its files beside the config, its services and its ports", () => {
  const { dir, meshes, problems } = declarationsOf(`
[agent.meshes.work]
hubs = ["hub.example.com:8888", "[2001:db8::1]:9000"]
ca = "ca.crt"
certificate = "/etc/ztm/web-1.crt"
key = "keys/web-1.key"
endpoint = "web-1"

[[agent.meshes.work.services]]
service = "tcp/ssh"
target = "127.0.0.1:22"
users = ["alice"]

[[agent.meshes.work.services]]
service = "udp/dns"
target = "[::1]:53"

[[agent.meshes.work.services]]
service = "web"
target = "localhost:8080"

[[agent.meshes.work.ports]]
listen = "127.0.0.1:8080"
service = "web"
endpoint = "web-2"
user = "bob"

[[agent.meshes.work.ports]]
listen = 5353
service = "udp/dns"
`);
  assert.deepEqual(problems, []);
  assert.deepEqual(meshes, [{
    name: "work",
    hubs: ["hub.example.com:8888", "[2001:db8::1]:9000"],
    ca: join(dir, "ca.crt"),
    certificate: "/etc/ztm/web-1.crt",
    key: join(dir, "keys/web-1.key"),
    endpoint: "web-1",
    services: [
      { proto: "tcp", name: "ssh", host: "127.0.0.1", port: 22, users: ["alice"] },
      { proto: "udp", name: "dns", host: "::1", port: 53, users: undefined },
      { proto: "tcp", name: "web", host: "localhost", port: 8080, users: undefined },
    ],
    ports: [
      {
        ip: "127.0.0.1",
        proto: "tcp",
        port: 8080,
        target: { service: "web", endpoint: "web-2", user: "bob" },
      },
      { ip: "127.0.0.1", proto: "udp", port: 5353, target: { service: "dns" } },
    ],
  }]);
});

Deno.test("a config without agent meshes declares nothing, and a single hub may be a string", () => {
  assert.deepEqual(declarationsOf(`[agent]\nlisten = "127.0.0.1:7777"\n`).meshes, []);
  assert.deepEqual(declarationsOf(`[hub]\nlisten = "0.0.0.0:8888"\n`).problems, []);
  const one = declarationsOf(`
[agent.meshes.home]
hubs = "hub:8888"
ca = "ca.crt"
certificate = "me.crt"
key = "me.key"
`);
  assert.deepEqual(one.problems, []);
  assert.deepEqual(one.meshes[0].hubs, ["hub:8888"]);
  assert.deepEqual(one.meshes[0].services, []);
  assert.deepEqual(one.meshes[0].ports, []);
});

Deno.test("every problem of a mesh is reported with its line, and a mesh without its files is not applied", () => {
  const { meshes, problems } = declarationsOf(`
[agent.meshes."bad name"]
hubs = ["hub:8888"]
ca = "ca.crt"
certificate = "me.crt"
key = "me.key"

[agent.meshes.nofiles]
hubs = []
ca = ""
endpoint = "a b"
`);
  const messages = problems.map((p) => p.message);
  assert.ok(
    messages.includes('mesh name "bad name" uses characters a mesh name cannot'),
    messages.join("\n"),
  );
  assert.ok(messages.includes('agent.meshes.nofiles: hubs is required ("host:port" or a list)'));
  for (const k of ["ca", "certificate", "key"]) {
    assert.ok(messages.includes(`agent.meshes.nofiles: ${k} (a file) is required`), k);
  }
  assert.ok(messages.includes("agent.meshes.nofiles: endpoint must be an endpoint name"));
  // The named mesh with its files is still read (a problem stops the start, not the reading).
  assert.deepEqual(meshes.map((m) => m.name), ["bad name"]);
  // Each problem stands at a line of the file.
  for (const p of problems) assert.ok(p.line > 0, JSON.stringify(p));
});

Deno.test("bad hubs, services and ports are each named, and the good ones beside them kept", () => {
  const { meshes, problems } = declarationsOf(`
[agent.meshes.work]
hubs = ["hub:8888", "no-port", 7, "a:b:c"]
ca = "ca.crt"
certificate = "me.crt"
key = "me.key"

[[agent.meshes.work.services]]
service = "sctp/x"
target = "127.0.0.1:1"

[[agent.meshes.work.services]]
service = "ssh"
target = "127.0.0.1"

[[agent.meshes.work.services]]
service = "web"
target = "127.0.0.1:80"
users = "alice"

[[agent.meshes.work.services]]
service = "ok"
target = "127.0.0.1:81"

[[agent.meshes.work.ports]]
listen = "127.0.0.1:0"
service = "web"

[[agent.meshes.work.ports]]
listen = "127.0.0.1:8080"
service = "web"
user = "*"

[[agent.meshes.work.ports]]
listen = 8081
service = "ok"
`);
  const messages = problems.map((p) => p.message).join("\n");
  assert.match(messages, /hub "no-port": /);
  assert.match(messages, /hub 7: not a string/);
  assert.match(messages, /hub "a:b:c": Bad address "a:b:c": write IPv6 as \[addr\]:port/);
  assert.match(messages, /services: service must be "tcp\/NAME", "udp\/NAME" or "NAME"/);
  assert.match(messages, /services: ssh: /);
  assert.match(messages, /services: web: users must be a list of user names/);
  assert.match(messages, /ports: listen: a port mapping needs a port/);
  assert.match(messages, /ports: user must be a name/);
  assert.equal(problems.length, 8, messages);
  const [work] = meshes;
  assert.deepEqual(work.services.map((s) => s.name), ["ok"]);
  assert.deepEqual(work.ports.map((p) => p.port), [8081]);
  // Problems of list items stand at the item's own line, not the mesh's.
  const at = (re: RegExp) => problems.find((p) => re.test(p.message))!.line;
  assert.ok(at(/users must be/) > at(/services: ssh/));
  assert.ok(at(/services: ssh/) > at(/hub 7/));
});

Deno.test("tables where lists belong, and lists where tables belong, are refused", () => {
  const notTable = declarationsOf(`[agent]\nmeshes = ["work"]\n`);
  assert.deepEqual(notTable.meshes, []);
  assert.deepEqual(notTable.problems.map((p) => p.message), [
    "agent.meshes must be a table of meshes",
  ]);

  const { problems } = declarationsOf(`
[agent.meshes]
work = "hub:8888"

[agent.meshes.home]
hubs = ["hub:8888"]
ca = "ca.crt"
certificate = "me.crt"
key = "me.key"
services = { service = "ssh" }
ports = "8080"
`);
  const messages = problems.map((p) => p.message);
  assert.ok(messages.includes("agent.meshes.work must be a table"), messages.join("\n"));
  assert.ok(
    messages.includes("agent.meshes.home.services must be a list of tables ([[…services]])"),
  );
  assert.ok(messages.includes("agent.meshes.home.ports must be a list of tables ([[…ports]])"));
});
