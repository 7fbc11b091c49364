/**
 * A member cannot erase another endpoint's audit log by flooding it with
 * management requests that do not verify. The flood comes from where a
 * member (or a hub) stands: a hand-built `HubClient` with mallory's valid
 * member certificate and a registered endpoint, sending more junk requests
 * (garbage, unsigned, signed by another CA, altered after signing) than the
 * audit log keeps entries. bob's agent, a real process, must keep its real
 * entries, count and sample the junk apart, answer the flooder 429
 * `too_many_refusals` after a few refusals, log the refusals once per kind,
 * and still take a real signed request from bob's other endpoint.
 */
import assert from "node:assert/strict";
import {
  createCaCertificate,
  exportPrivateKeyPem,
  generateKeyPair,
  issueLeafCertificate,
} from "@ztm/shared/certs";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { signRequest } from "@ztm/shared/signed_request";
import { UNVERIFIED_BURST, UNVERIFIED_REFILL_MS } from "../../agent/remote.ts";
import { MAX_AUDIT_ENTRIES } from "../../agent/store.ts";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { errorCode, HubClient, type HubReply, userTls } from "../fixtures/hub_client.ts";
import { endpointPath, startJoinedAgent, startMeshOf } from "../fixtures/mesh_fixture.ts";

/** More junk than the audit log keeps entries. */
const FLOOD = MAX_AUDIT_ENTRIES + 50;
const CONCURRENCY = 64;

Deno.test("junk management requests from a member neither push real entries out of the audit log nor go unrationed", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob"]);
  const { bob } = m.agents;
  const mallory = await issueUser(m.ca.url, "mallory");

  // A real entry: bob changes his own endpoint.
  const svc = { host: "127.0.0.1", port: 7301, users: [], strict: false };
  const made = await api(bob.url, "POST", endpointPath(bob.endpointId, "services/tcp/real"), svc);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const logPath = `${endpointPath(bob.endpointId, "log")}?limit=500`;
  const before = (await api(bob.url, "GET", logPath)).body;
  assert.equal(before.total, 1, JSON.stringify(before));
  const real = before.items[0];
  assert.equal(real.path, "services/tcp/real");

  // The junk: garbage, and requests that are signed wrongly in every way a member can manage.
  const caKeys = await generateKeyPair();
  const foreignCa = await createCaCertificate(caKeys, { name: "ztm mesh CA" });
  const keys = await generateKeyPair();
  const foreign = {
    certificate: (await issueLeafCertificate(
      { certificate: foreignCa, privateKey: caKeys.privateKey },
      { commonName: "root", publicKey: keys.publicKey, role: "client" },
    )).toString("pem"),
    privateKey: await exportPrivateKeyPem(keys.privateKey),
  };
  const request = {
    method: "DELETE",
    path: "services/tcp/real",
    body: "",
    target: bob.endpointId,
    from: "hub-side-probe",
  };
  const mine = { certificate: mallory.certificate, privateKey: mallory.privateKey };
  const signedByMallory = await signRequest(request, mine);
  const junk = [
    "{}",
    JSON.stringify({ method: "DELETE" }),
    JSON.stringify(await signRequest(request, foreign)),
    JSON.stringify({ ...signedByMallory, path: "services/tcp/other" }),
    JSON.stringify({ ...signedByMallory, signature: "AAAA" }),
    JSON.stringify({ ...signedByMallory, certificate: bob.files.certificate }),
  ];

  await using hub = HubClient.connect(m.hub.port, userTls(mallory));
  const control = await hub.openControl("hub-side-probe", "probe");
  assert.equal(control.status, 200, control.text);
  control.stream.on("data", () => {});
  const statuses = new Map<string, number>();
  let next = 0;
  const first: HubReply[] = [];
  const started = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < FLOOD) {
      const i = next++;
      const reply = await hub.request("POST", HUB_PATHS.manage(bob.endpointId), {
        body: junk[i % junk.length],
      });
      const key = `${reply.status} ${errorCode(innerText(reply.text)) ?? reply.refused}`;
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
      if (reply.status === 429 && first.length === 0) first.push(reply);
    }
  }));
  const took = Date.now() - started;
  console.log(
    `${FLOOD} junk requests in ${took} ms: ${JSON.stringify(Object.fromEntries(statuses))}`,
  );

  // The audit log still holds the real entry and nothing from the flood; the flood is counted apart.
  const after = (await api(bob.url, "GET", logPath)).body;
  assert.equal(after.total, 1, `the flood reached the audit log: ${after.total} entries`);
  assert.deepEqual(after.items[0], real);
  assert.equal(after.unverified.count, FLOOD, JSON.stringify(after.unverified).slice(0, 500));
  assert.equal(after.unverified.recent.length, 20);
  for (const e of after.unverified.recent) {
    assert.equal(e.via, control.id, JSON.stringify(e)); // the session's key-bound endpoint id
    assert.equal(e.user, "mallory (unverified)", JSON.stringify(e));
  }

  // Rationed: after a few refusals, the flooder is answered 429 with a clear code and message.
  // (Its budget: the burst, and one more per refill period the flood lasted.)
  const limited = statuses.get("429 too_many_refusals") ?? 0;
  const budget = UNVERIFIED_BURST + Math.ceil(took / UNVERIFIED_REFILL_MS);
  assert.ok(limited >= FLOOD - budget, `only ${limited} of ${FLOOD} answered 429`);
  assert.equal(
    [...statuses.keys()].filter((k) => !/^(400|401|403|429) /.test(k)).length,
    0,
    JSON.stringify(Object.fromEntries(statuses)),
  );
  assert.match(
    JSON.parse(first[0].text).error.message,
    new RegExp(
      `User "mallory" \\(endpoint "${control.id}"\\) sent too many management requests ` +
        "that did not verify; try again in \\d+ s",
    ),
  );

  // Logged once per kind, then counted.
  const lines = bob.proc.logs.filter((l) => l.msg === "remote request refused");
  assert.ok(
    lines.length > 0 && lines.length <= 30,
    `${lines.length} "remote request refused" lines`,
  );

  // bob's other endpoint still manages this one: the ration is the flooder's alone.
  const laptop = await startJoinedAgent(h, m.hub.address, bob.files, "bob-laptop");
  const remote = await api(
    laptop.url,
    "POST",
    endpointPath(bob.endpointId, "services/tcp/after"),
    svc,
  );
  assert.equal(remote.status, 201, JSON.stringify(remote.body));
  const last = (await api(bob.url, "GET", logPath)).body;
  assert.equal(last.total, 2);
  assert.equal(last.items[0].via, laptop.endpointId);
  assert.equal(last.items[0].outcome, "ok");
  assert.deepEqual(last.items[1], real);
});

/** The target's body inside a signed answer, or the text as it is. */
function innerText(text: string): string {
  try {
    const v = JSON.parse(text);
    return typeof v?.body === "string" && typeof v?.signature === "string" ? v.body : text;
  } catch {
    return text;
  }
}
