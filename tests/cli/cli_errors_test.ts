/**
 * How `ztm` fails: a command line it cannot act on exits 2 with one line and
 * the usage; an operation the agent or the CA refuses exits 1 with the API's
 * own message; `--help` works on every command and shows an example.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm } from "../fixtures/cli_helpers.ts";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";

const COMMANDS = [
  "ca",
  "hub",
  "agent",
  "start",
  "join",
  "leave",
  "get",
  "create service",
  "create port",
  "delete service",
  "delete port",
  "status",
  "dashboard",
  "log",
  "mesh set-hubs",
  "cert new",
  "cert revoke",
  "cert list",
  "proxy on",
  "proxy off",
  "proxy status",
];

Deno.test("every ztm command answers --help with its usage and an example, exit 0", async () => {
  const top = await ztm(["--help"]);
  assertEquals(top.code, 0);
  for (const command of COMMANDS) {
    assert(top.stdout.includes(`\n  ${command}`), `ztm --help lists ${command}`);
    const out = await ztm([...command.split(" "), "--help"]);
    assertEquals(out.code, 0, `${command}: ${out.stderr}`);
    assert(out.stdout.startsWith(`Usage: ztm ${command}`), out.stdout);
    assert(/\nExamples:\n {2}ztm /.test(out.stdout), `${command} shows an example`);
  }
});

Deno.test("ztm exits 2 with one line and the usage for a command line it cannot act on", async () => {
  const cases: [string[], string, string][] = [
    [[], "ztm: a command is required", "Usage: ztm COMMAND"],
    [["frobnicate"], 'ztm: unknown command "frobnicate"', "Usage: ztm COMMAND"],
    [["get"], "ztm get: KIND is required", "Usage: ztm get KIND [flags]"],
    [["get", "widgets"], 'ztm get: Unknown KIND "widgets"', "Usage: ztm get KIND"],
    [["get", "meshes", "--bogus"], "ztm get: Unknown option '--bogus'", "Usage: ztm get"],
    [["get", "meshes", "--agent=nowhere:99999"], "ztm get: --agent: Bad port", "Usage: ztm get"],
    [["status", "now"], 'ztm status: Unexpected argument "now"', "Usage: ztm status [flags]"],
    [["create"], "ztm: create needs one of: service, port", "Usage: ztm create service"],
    [["delete", "widget"], 'ztm: unknown delete "widget"', "Usage: ztm delete service"],
    [["join", "work", "--hub=h:1"], "ztm join: --ca is required", "Usage: ztm join MESH"],
    [
      ["create", "service", "sctp/dns", "--host=h", "--port=53"],
      'ztm create service: PROTO/NAME: unknown protocol "sctp"',
      "Usage: ztm create service PROTO/NAME",
    ],
    [
      ["create", "port", "127.0.0.1:x", "--service=tcp/ssh"],
      "ztm create port: [IP:]PORT: Bad port",
      "Usage: ztm create port [IP:]PORT",
    ],
    [
      ["create", "port", "2222"],
      "ztm create port: --service is required",
      "Usage: ztm create port",
    ],
    [["cert", "new", "../evil"], 'ztm cert new: Bad NAME "../evil"', "Usage: ztm cert new NAME"],
  ];
  for (const [args, first, usageLine] of cases) {
    const out = await ztm(args);
    assertEquals(out.code, 2, `ztm ${args.join(" ")}: ${out.stderr}`);
    const lines = out.stderr.split("\n");
    assert(lines[0].startsWith(first), `ztm ${args.join(" ")}: ${lines[0]}`);
    assertEquals(lines[1], "");
    assert(lines[2].startsWith(usageLine), `ztm ${args.join(" ")}: ${lines[2]}`);
    assertEquals(out.stdout, "");
  }
});

Deno.test("ztm exits 1 with the API's message when the agent or the CA refuses", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const flags = agentFlags(alice.proc);
  /** Runs ztm, expects exit 1 and exactly `ztm <command>: <message>` on stderr. */
  const refused = async (args: string[], message: string) => {
    const out = await ztm(args);
    assertEquals(out.code, 1, `ztm ${args.join(" ")}: ${out.stderr}${out.stdout}`);
    const command = args.slice(0, ["create", "delete", "cert"].includes(args[0]) ? 2 : 1);
    assertEquals(out.stderr, `ztm ${command.join(" ")}: ${message}\n`);
    assertEquals(out.stdout, "");
  };
  const apiMessage = async (method: string, path: string, body?: unknown) => {
    const res = await api(alice.url, method, path, body);
    assert(res.status >= 400, `${path} is refused`);
    return res.body.error.message as string;
  };

  await refused(
    ["get", "endpoints", "--mesh=nope", ...flags],
    await apiMessage("GET", "/api/meshes/nope"),
  );
  await refused(
    ["create", "service", "tcp/web", "--host=bad host!", "--port=80", ...flags],
    await apiMessage("POST", `/api/meshes/${MESH}/endpoints/${alice.endpointId}/services/tcp/web`, {
      host: "bad host!",
      port: 80,
    }),
  );
  await refused(
    ["create", "port", "99999", "--service=tcp/web", ...flags],
    'Bad port "99999": use 1 to 65535',
  );
  // A port that is taken: the agent cannot listen there.
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await refused(
    ["create", "port", String(taken.addr.port), "--service=tcp/web", ...flags],
    `Port 127.0.0.1/tcp/${taken.addr.port} is already in use`,
  );
  await refused(
    ["delete", "port", "2222", ...flags],
    `Unknown port mapping "127.0.0.1/tcp/2222" in mesh "${MESH}"`,
  );

  // A join whose key belongs to another certificate changes nothing.
  const dir = await h.tempDir("ztm-cli-files-");
  const bob = await issueUser(m.ca.url, "bob");
  Deno.writeTextFileSync(join(dir, "ca.crt"), bob.ca);
  Deno.writeTextFileSync(join(dir, "bob.crt"), bob.certificate);
  Deno.writeTextFileSync(join(dir, "alice.key"), alice.files.privateKey);
  const joinArgs = [
    "join",
    "other",
    `--hub=${m.hub.address}`,
    `--ca=${join(dir, "ca.crt")}`,
    `--cert=${join(dir, "bob.crt")}`,
    `--key=${join(dir, "alice.key")}`,
    ...flags,
  ];
  const mismatch = await apiMessage("POST", "/api/meshes/other", {
    ca: bob.ca,
    agent: { certificate: bob.certificate, privateKey: alice.files.privateKey },
    bootstraps: [m.hub.address],
  });
  await refused(joinArgs, mismatch);
  assertEquals((await api(alice.url, "GET", "/api/meshes")).body.length, 1);

  // The wrong token, no token, no agent.
  const wrong = await ztm(["get", "meshes", `--agent=127.0.0.1:${alice.proc.port}`], {
    env: { ZTM_API_TOKEN: "not-the-token-at-all" },
  });
  assertEquals(wrong.code, 1);
  assertEquals(
    wrong.stderr,
    `ztm get: the agent on 127.0.0.1:${alice.proc.port} refused the API token from $ZTM_API_TOKEN: ` +
      `this agent's token is in ${alice.proc.database}.token; pass --api-token-file=${alice.proc.database}.token or run as the agent's user\n`,
  );
  const none = await ztm(["status", `--agent=127.0.0.1:${alice.proc.port}`]);
  assertEquals(none.code, 1);
  assert(none.stderr.startsWith("ztm status: No API token: none of ~/ztm.db.token"), none.stderr);
  const gone = await freePort();
  const down = await ztm(["status", `--agent=127.0.0.1:${gone}`, ...flags.slice(1)]);
  assertEquals(down.code, 1);
  assertEquals(
    down.stderr,
    `ztm status: no agent answers on 127.0.0.1:${gone} (start one with \`ztm agent\`, or name another with --agent)\n`,
  );

  // The CA refuses a name that has a certificate, and ztm keeps the files it finds.
  const caFlag = `--ca-url=${m.ca.url}`;
  const certDir = await h.tempDir("ztm-cli-certs-");
  await refused(["cert", "new", "alice", caFlag, `--dir=${certDir}`], await caRefusal(m.ca.url));
  assertEquals([...Deno.readDirSync(certDir)].map((e) => e.name).sort(), [], "nothing written");
  await refused(
    ["cert", "new", "bob", caFlag, `--dir=${dir}`],
    `${join(dir, "bob.crt")} already exists; move it away or choose another --dir`,
  );
  assertEquals(Deno.readTextFileSync(join(dir, "bob.crt")), bob.certificate, "kept as it was");
  const otherCa = await h.tempDir("ztm-cli-other-");
  Deno.writeTextFileSync(join(otherCa, "ca.crt"), (await issueUser(m.ca.url, "dave")).certificate);
  await refused(
    ["cert", "new", "erin", caFlag, `--dir=${otherCa}`],
    `${join(otherCa, "ca.crt")} holds another CA's certificate; choose another --dir`,
  );
  const erin = await fetch(`${m.ca.url}/api/certificates/erin`);
  await erin.body?.cancel();
  assertEquals(erin.status, 404, "no certificate was issued for erin");
  await refused(["cert", "revoke", "nobody", caFlag], 'Unknown certificate "nobody"');
});

Deno.test("ztm asks for --mesh when the agent has joined several meshes", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const res = await api(alice.url, "POST", "/api/meshes/second", {
    ca: alice.files.ca,
    agent: { certificate: alice.files.certificate, privateKey: alice.files.privateKey },
    bootstraps: [m.hub.address],
  });
  assertEquals(res.status, 201, JSON.stringify(res.body));
  const out = await ztm(["get", "ports", ...agentFlags(alice.proc)]);
  assertEquals(out.code, 2);
  const first = out.stderr.split("\n")[0];
  assert(first.startsWith("ztm get: --mesh is required: this agent has joined "), first);
  assertEquals(first.split("joined ")[1].split(", ").sort(), ["second", MESH]);
  const named = await ztm(["get", "ports", "--mesh=second", ...agentFlags(alice.proc)]);
  assertEquals(named.code, 0, named.stderr);
  assertEquals(named.stdout, "No port mappings.\n");
});

/** What the CA answers to a second POST for a name it has issued (409). */
async function caRefusal(caUrl: string): Promise<string> {
  const res = await fetch(`${caUrl}/api/certificates/alice`, { method: "POST" });
  assertEquals(res.status, 409);
  return (await res.json()).error.message;
}
