/// <reference lib="dom" />
/**
 * Strings a member controls never reach another user's terminal as escape
 * sequences. Every API refuses control characters where names come in (the
 * hub in a published endpoint record, the agent in its API and in signed
 * management requests, the CA in certificate names) and escapes them in the
 * messages that name a bad value. What a member can still send raw — a rogue
 * endpoint answering management requests with whatever it likes, spoken
 * straight to the hub protocol with a hand-built client — the `ztm` command
 * line prints escaped, and the dashboard shows as text.
 */
import assert from "node:assert/strict";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { signAnswer, signRequest } from "@ztm/shared/signed_request";
import { agentFlags, ztm } from "../fixtures/cli_helpers.ts";
import {
  api,
  type ApiBody,
  eventually,
  Harness,
  issueUser,
  type UserFiles,
} from "../fixtures/harness.ts";
import { errorCode, HubClient, readLine, userTls } from "../fixtures/hub_client.ts";
import { auditLog, endpointPath, MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { goTo, openBrowser, WIDE } from "../fixtures/ui_browser.ts";

/** What a terminal obeys: C0 but newline, DEL, C1, bidirectional overrides. */
const RAW_CONTROL =
  // deno-lint-ignore no-control-regex
  /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** Clear screen, retitle the window, CSI in C1 form, carriage return, bidi override, HTML. */
const HOSTILE = "\x1b[2J\x1b]0;pwned\x07\u009b31m\rOK\u202eevil<img src=x onerror=alert(1)>";

function assertNoRawControl(text: string, what: string): void {
  const at = text.search(RAW_CONTROL);
  assert.equal(
    at,
    -1,
    `${what} printed a raw control character: ${JSON.stringify(text.slice(at - 20, at + 20))}`,
  );
}

/** Every string in `value` (deep). */
function stringsOf(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(stringsOf);
  if (value && typeof value === "object") return Object.values(value).flatMap(stringsOf);
  return [];
}

/**
 * A hand-built endpoint of `files.user` on the hub, registered with a clean
 * hello, that answers every management request with hostile strings: an
 * audit log, services and port mappings for GETs, a deleted service for
 * DELETE on services, and a refusal for anything else.
 */
async function startRogueEndpoint(hubPort: number, files: UserFiles, id: string) {
  const client = HubClient.connect(hubPort, userTls(files));
  const control = await client.openControl(id, id);
  assert.equal(control.status, 200, control.text);
  const answer = (path: string, method: string): { status: number; body: unknown } => {
    const service = { proto: "tcp", name: HOSTILE, host: HOSTILE, port: 1, users: [HOSTILE] };
    if (method === "GET" && path.startsWith("log")) {
      const entry = {
        id: 1,
        time: HOSTILE,
        user: HOSTILE,
        via: HOSTILE,
        method: HOSTILE,
        path: HOSTILE,
        status: 200,
        outcome: HOSTILE,
      };
      return { status: 200, body: { items: [entry], total: 1, offset: 0, limit: 100 } };
    }
    if (method === "GET" && path.startsWith("services")) return { status: 200, body: [service] };
    if (method === "GET" && path.startsWith("ports")) {
      const target = { service: HOSTILE, user: HOSTILE, endpoint: HOSTILE };
      return { status: 200, body: [{ ip: "127.0.0.1", proto: "tcp", port: 1, target }] };
    }
    if (method === "DELETE" && path.startsWith("services")) return { status: 200, body: service };
    return { status: 409, body: { error: { code: "nope", message: HOSTILE } } };
  };
  let buf = "";
  const decoder = new TextDecoder();
  control.stream.on("data", (chunk: Uint8Array) => {
    buf += decoder.decode(chunk, { stream: true });
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (msg.type !== "manage") continue;
      const { status, body } = answer(String(msg.request.path), String(msg.request.method));
      // A member's endpoint signs its answers with its own key: hostile, but genuine.
      signAnswer(msg.request, { status, body: JSON.stringify(body) }, {
        certificate: files.certificate,
        privateKey: files.privateKey,
        endpointId: control.id,
      }).then((signed) =>
        control.stream.write(
          JSON.stringify({ type: "managed", rid: msg.rid, status, body: JSON.stringify(signed) }) +
            "\n",
        )
      );
    }
  });
  return client;
}

Deno.test("the hub refuses control characters in a published endpoint record, so ztm get services shows none", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const mallory = await issueUser(m.ca.url, "mallory");
  // A session holds at most 2 control streams: each attempt gets its own session.
  const session = () => HubClient.connect(m.hub.port, userTls(mallory));
  const seed = "mallory-ep-seed";
  const malloryId = endpointIdOfCertificate(mallory.certificate, seed);
  const hello = (fields: Record<string, unknown>) =>
    JSON.stringify({
      type: "hello",
      name: "mallory-ep",
      seed,
      version: "1",
      services: [],
      ...fields,
    }) + "\n";
  const db = (users: string[]) => [{ proto: "tcp", name: "db", users }];

  for (
    const [what, fields, code] of [
      ["users", { services: db(["alice", HOSTILE]) }, "bad_services"],
      ["a user with a newline", { services: db(["alice\nroot"]) }, "bad_services"],
      ["version", { version: "1\x1b]0;pwned\x07" }, "bad_version"],
    ] as const
  ) {
    await using client = session();
    const opened = await client.openStream(HUB_PATHS.control(malloryId), hello(fields));
    assert.equal(opened.status, 400, `hostile ${what}: ${opened.text}`);
    assert.equal(errorCode(opened.text), code, opened.text);
  }

  // A clean hello, then a services update with hostile users: the hub drops the stream.
  await using client = session();
  const opened = await client.openStream(
    HUB_PATHS.control(malloryId),
    hello({ services: db(["alice"]) }),
  );
  assert.equal(opened.status, 200, opened.text);
  await readLine(opened.stream); // welcome
  opened.stream.write(JSON.stringify({ type: "services", services: db([HOSTILE]) }) + "\n");
  const error = JSON.parse(await readLine(opened.stream));
  assert.equal(error.type, "error");
  assert.equal(error.code, "bad_message");

  const listed = await api(alice.url, "GET", `/api/meshes/${MESH}/services`);
  assert.equal(listed.status, 200);
  assertNoRawControl(JSON.stringify(stringsOf(listed.body)), "the hub's service list");
  const out = await ztm(["get", "services", ...agentFlags(alice.proc)]);
  assert.equal(out.code, 0, out.stderr);
  assertNoRawControl(out.stdout + out.stderr, "ztm get services");
});

Deno.test("ztm prints a rogue endpoint's hostile audit log, services, ports and errors with their control characters escaped", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  await using _rogue = await startRogueEndpoint(
    m.hub.port,
    await issueUser(m.ca.url, "mallory"),
    "rogue-ep",
  );
  const flags = [...agentFlags(alice.proc), "--endpoint=rogue-ep"];
  const runs: [string[], number][] = [
    [["log"], 0],
    [["log", "--json"], 0],
    [["get", "services"], 0],
    [["get", "services", "--json"], 0],
    [["get", "ports"], 0],
    [["delete", "service", "tcp/db"], 0],
    [["delete", "port", "1234"], 1],
  ];
  for (const [args, code] of runs) {
    const out = await ztm([...args, ...flags]);
    const what = `ztm ${args.join(" ")}`;
    assert.equal(out.code, code, `${what}: ${out.stderr}${out.stdout}`);
    assertNoRawControl(out.stdout + out.stderr, what);
    // The hostile text did reach the output, escaped (or as JSON escapes, the same JSON value).
    assert.match(out.stdout + out.stderr, /\\(x1b|u001b)\[2J/, `${what}: ${out.stdout}`);
    if (args.includes("--json")) {
      assert.ok(stringsOf(JSON.parse(out.stdout)).includes(HOSTILE), `${what}: ${out.stdout}`);
    }
  }
});

Deno.test("the dashboard shows a rogue endpoint's hostile strings as text", async () => {
  await using h = new Harness();
  // root may manage every endpoint, so its dashboard asks the rogue for its lists.
  const m = await startMeshOf(h, ["root"]);
  const alice = m.agents.root;
  await using _rogue = await startRogueEndpoint(
    m.hub.port,
    await issueUser(m.ca.url, "mallory"),
    "rogue-ep",
  );
  await using b = await openBrowser();
  const page = await b.signIn(alice.url, WIDE);
  await goTo(page, `#/m/${MESH}/endpoints/rogue-ep`, /rogue-ep/);
  const main = page.locator("#main");
  await eventually(
    async () => (await main.innerText()).includes("onerror=alert(1)>"),
    15_000,
    "the hostile strings shown on the endpoint screen",
  );
  assert.equal(await page.locator("#main img").count(), 0, "an element was injected");
  // The text is there as it was sent (the browser shows control characters, it does not obey them).
  const text = await main.evaluate((el) => el.textContent ?? "");
  assert.ok(text.includes("\u202eevil<img src=x onerror=alert(1)>"), text);
});

Deno.test("agent and CA refuse control characters in names and escape them in messages; the audit log never stores them", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const mallory = await issueUser(m.ca.url, "mallory");
  const message = (body: ApiBody) => String(body?.error?.message);

  // The agent's own API: a service name and a user list with control characters.
  const name = encodeURIComponent("db\x1b[2J");
  const badName = await api(
    alice.url,
    "POST",
    endpointPath(alice.endpointId, `services/tcp/${name}`),
    { host: "127.0.0.1", port: 7000 },
  );
  assert.equal(badName.status, 400, JSON.stringify(badName.body));
  assertNoRawControl(message(badName.body), "the bad service name's message");
  assert.match(message(badName.body), /db\\x1b\[2J/);
  const badUsers = await api(
    alice.url,
    "POST",
    endpointPath(alice.endpointId, "services/tcp/db"),
    { host: "127.0.0.1", port: 7000, users: ["bob\x07"] },
  );
  assert.equal(badUsers.status, 400, JSON.stringify(badUsers.body));
  assertNoRawControl(message(badUsers.body), "the bad users' message");

  // The CA: a certificate name with control characters.
  const ca = await fetch(`${m.ca.url}/api/certificates/${encodeURIComponent("eve\x1b[2J")}`, {
    method: "POST",
  });
  const caBody = await ca.json();
  assert.equal(ca.status, 400, JSON.stringify(caBody));
  assertNoRawControl(message(caBody), "the CA's bad name message");

  // A signed management request whose fields carry control characters, straight to the hub.
  await using client = HubClient.connect(m.hub.port, userTls(mallory));
  const control = await client.openControl("mallory-hand", "mallory-hand");
  assert.equal(control.status, 200, control.text);
  control.stream.on("data", () => {});
  for (
    const fields of [
      { from: "mallory-hand\x1b]0;pwned\x07", path: "services" },
      { from: "mallory-hand", path: "services/tcp/db\x1b[2J" },
    ]
  ) {
    const signed = await signRequest(
      { method: "GET", body: "", target: alice.endpointId, ...fields },
      { certificate: mallory.certificate, privateKey: mallory.privateKey },
    );
    const reply = await client.request("POST", HUB_PATHS.manage(alice.endpointId), {
      body: JSON.stringify(signed),
    });
    assert.equal(reply.status, 400, reply.text);
    assert.equal(errorCode(reply.text), "bad_signed_request", reply.text);
  }
  // The two local refusals are audited; the signed requests that were refused are kept apart
  // (requests that do not verify never enter the audit log) and must be clean too.
  const log = await auditLog(alice);
  assert.ok(log.length >= 2, JSON.stringify(log));
  for (const entry of log) assertNoRawControl(JSON.stringify(stringsOf(entry)), "an audit entry");
  const out = await ztm(["log", ...agentFlags(alice.proc)]);
  assert.equal(out.code, 0, out.stderr);
  assertNoRawControl(out.stdout, "ztm log");
});
