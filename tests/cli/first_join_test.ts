/**
 * First contact, the join: `ztm join` waits for the first hub session and,
 * when the hub cannot be reached, fails with a sentence naming the address
 * and the likely cause — and joins nothing. `--no-wait` keeps the old
 * behaviour; `ztm mesh set-hubs` (PATCH on the mesh) changes the hubs in place.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";

/** Writes a user's three files into `dir`; returns the join flags for them. */
async function userFiles(caUrl: string, user: string, dir: string): Promise<string[]> {
  const files = await issueUser(caUrl, user);
  Deno.writeTextFileSync(join(dir, "ca.crt"), files.ca);
  Deno.writeTextFileSync(join(dir, `${user}.crt`), files.certificate);
  Deno.writeTextFileSync(join(dir, `${user}.key`), files.privateKey, { mode: 0o600 });
  return [
    `--ca=${join(dir, "ca.crt")}`,
    `--cert=${join(dir, `${user}.crt`)}`,
    `--key=${join(dir, `${user}.key`)}`,
  ];
}

Deno.test("ztm join fails in plain words for each hub it cannot reach, and joins nothing", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  // A hub whose certificate names only localhost (and the CA's 127.0.0.1), listening on 127.0.0.2.
  const narrow = await h.startHub(ca, { args: ["--listen=127.0.0.2:0"] });
  // A hub of another CA (both CAs are new, so they are told apart by name and fingerprint).
  const otherCa = await h.startCa();
  const foreign = await h.startHub(otherCa);
  const stopped = await h.startHub(ca);
  await stopped.stop();
  const agent = await h.startAgent();
  const flags = agentFlags(agent);
  const files = await userFiles(ca.url, "alice", await h.tempDir("ztm-files-"));
  const free = await freePort();
  const joinTo = (hubArg: string, extra: string[] = []) =>
    ztm(["join", "work", `--hub=${hubArg}`, "--timeout=20", ...files, ...flags, ...extra]);

  const cases: [string, RegExp][] = [
    [`localhost:${free}`, new RegExp(`^nothing listens on localhost:${free} `)],
    [`localhost:${stopped.port}`, new RegExp(`^nothing listens on localhost:${stopped.port} `)],
    ["no-such-hub.invalid:8888", /^the host name "no-such-hub.invalid" is not known here/],
    [`127.0.0.1:${ca.port}`, new RegExp(`^127.0.0.1:${ca.port} does not answer as a ztm hub`)],
    [`127.0.0.2:${narrow.port}`, /^the hub's certificate does not name "127.0.0.2"/],
    [
      `localhost:${foreign.port}`,
      /^the hub's certificate is from another CA, not this mesh's CA "CN=ztm mesh CA [0-9a-f]{6}" \(SHA-256 fingerprint [0-9a-f]{16}…\)/,
    ],
  ];
  for (const [address, cause] of cases) {
    const out = await joinTo(address);
    assertEquals(out.code, 1, `${address}: ${out.stderr}${out.stdout}`);
    const prefix = `ztm join: Could not reach the hub of mesh "work", so it was not joined: `;
    assert(out.stderr.includes(prefix), out.stderr);
    const reason = out.stderr.split(prefix)[1];
    assert(cause.test(reason), `${address}: ${reason}`);
    assertEquals((await api(agent.url, "GET", "/api/meshes")).body, [], "nothing joined");
  }

  // Something that takes the connection and never answers: the join says it is waiting, and why
  // it gave up.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  try {
    const out = await joinTo(`127.0.0.1:${silent.addr.port}`);
    assertEquals(out.code, 1, out.stderr);
    assert(
      out.stderr.startsWith(
        `Joining mesh "work": waiting up to 20 s for the hub at 127.0.0.1:${silent.addr.port} …\n`,
      ),
      out.stderr,
    );
    assert(
      out.stderr.includes(`: no answer from 127.0.0.1:${silent.addr.port} (within 10 s)`),
      out.stderr,
    );
  } finally {
    silent.close();
    for (const conn of held) conn.close();
  }

  // A hub given as a URL is taken for its host and port; the join waits for the session.
  const ok = await joinTo(`https://localhost:${hub.port}/`);
  assertEquals(ok.code, 0, ok.stderr);
  assert(ok.stdout.includes(`; connected to localhost:${hub.port}`), ok.stdout);
  const plain = await ztm(["join", "w2", `--hub=http://localhost:${hub.port}`, ...files, ...flags]);
  assertEquals(plain.code, 2);
  assert(
    plain.stderr.startsWith(
      `ztm join: --hub: "http://localhost:${hub.port}" is a http URL; give the hub as HOST:PORT, e.g. hub.example.com:8888`,
    ),
    plain.stderr,
  );
});

Deno.test("--no-wait joins at once; ztm mesh set-hubs fixes the hub address in place", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const agent = await h.startAgent();
  const flags = agentFlags(agent);
  const files = await userFiles(ca.url, "bob", await h.tempDir("ztm-files-"));
  const wrong = `localhost:${await freePort()}`;
  const joined = await ztmOk(["join", "work", `--hub=${wrong}`, "--no-wait", ...files, ...flags]);
  assert(joined.includes("(not waiting for the hub: see ztm status)"), joined);
  const before = (await api(agent.url, "GET", "/api/meshes/work")).body;
  // A new address that does not answer either is refused and the old one kept.
  const still = `localhost:${await freePort()}`;
  const refused = await ztm([
    "mesh",
    "set-hubs",
    "work",
    `--hub=${still}`,
    "--timeout=20",
    ...flags,
  ]);
  assertEquals(refused.code, 1, refused.stderr);
  assert(
    refused.stderr.includes(`so it keeps ${wrong}: nothing listens on ${still}`),
    refused.stderr,
  );
  // The right address, with a service and a port mapping in place: they stay.
  const svc = await api(
    agent.url,
    "POST",
    `/api/meshes/work/endpoints/${before.endpoint.id}/services/tcp/web`,
    {
      host: "127.0.0.1",
      port: 9,
    },
  );
  assertEquals(svc.status, 201, JSON.stringify(svc.body));
  const out = await ztmOk(["mesh", "set-hubs", "work", `--hub=localhost:${hub.port}`, ...flags]);
  assert(
    out.includes(`now uses hubs localhost:${hub.port}; connected to localhost:${hub.port}`),
    out,
  );
  const after = (await api(agent.url, "GET", "/api/meshes/work")).body;
  assertEquals(after.endpoint, before.endpoint, "the same endpoint");
  assertEquals(after.bootstraps, [`localhost:${hub.port}`]);
  const services = await api(
    agent.url,
    "GET",
    `/api/meshes/work/endpoints/${after.endpoint.id}/services`,
  );
  assertEquals(services.body.map((s: { name: string }) => s.name), ["web"]);
  // The API answers the dashboard's join the same way: wait, then the plain reason (503).
  const direct = await api(agent.url, "POST", `/api/meshes/other?wait=20`, {
    ca: Deno.readTextFileSync(files[0].slice("--ca=".length)),
    agent: {
      certificate: Deno.readTextFileSync(files[1].slice("--cert=".length)),
      privateKey: Deno.readTextFileSync(files[2].slice("--key=".length)),
    },
    bootstraps: [still],
  });
  assertEquals(direct.status, 503);
  assertEquals(direct.body.error.code, "hub_unreachable");
  assert(
    direct.body.error.message.includes(`nothing listens on ${still}`),
    direct.body.error.message,
  );
  const badWait = await api(agent.url, "POST", `/api/meshes/other?wait=soon`, {});
  assertEquals(badWait.status, 400);
  assertEquals(badWait.body.error.code, "bad_wait");
});
