/**
 * A compromised hub cannot forge management. The test
 * stands where the hub stands: a hand-built `HubClient` with a valid member
 * certificate registers an endpoint and then sends whatever it likes through
 * `POST /api/endpoints/{id}/manage`, which the hub hands to the target agent
 * unchanged — so anything a hub could put on a control stream, this client
 * can deliver. It holds a request root really signed (built here with
 * `signRequest` and root's key from the CA, as a captured request would be)
 * and replays, alters, retargets and re-signs it; the target agents, real
 * processes, must apply only the untouched original.
 */
import assert from "node:assert/strict";
import {
  createCaCertificate,
  exportPrivateKeyPem,
  generateKeyPair,
  issueLeafCertificate,
} from "@ztm/shared/certs";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { ANSWER_FORMAT, type SignedRequest, signRequest } from "@ztm/shared/signed_request";
import { api, eventually, Harness, issueUser, type UserFiles } from "../fixtures/harness.ts";
import { errorCode, HubClient, type HubReply, userTls } from "../fixtures/hub_client.ts";
import {
  type AuditEntry,
  auditLog,
  endpointPath,
  type MeshAgent,
  restartJoinedAgent,
  startMeshOf,
  withoutState,
} from "../fixtures/mesh_fixture.ts";

/** A signer as `signRequest` wants it. */
function signerOf(files: UserFiles): { certificate: string; privateKey: string } {
  return { certificate: files.certificate, privateKey: files.privateKey };
}

/** A user certificate named `user` from a CA made here, not the mesh's. */
async function foreignSigner(user: string): Promise<{ certificate: string; privateKey: string }> {
  const caKeys = await generateKeyPair();
  const caCert = await createCaCertificate(caKeys, { name: "ztm mesh CA" });
  const keys = await generateKeyPair();
  const cert = await issueLeafCertificate(
    { certificate: caCert, privateKey: caKeys.privateKey },
    { commonName: user, publicKey: keys.publicKey, role: "client" },
  );
  return {
    certificate: cert.toString("pem"),
    privateKey: await exportPrivateKeyPem(keys.privateKey),
  };
}

/** The agent's own services and port mappings, read locally. */
async function stateOf(agent: MeshAgent): Promise<{ services: unknown; ports: unknown }> {
  const services = await api(agent.url, "GET", endpointPath(agent.endpointId, "services"));
  assert.equal(services.status, 200, JSON.stringify(services.body));
  const ports = await api(agent.url, "GET", endpointPath(agent.endpointId, "ports"));
  assert.equal(ports.status, 200, JSON.stringify(ports.body));
  return { services: services.body.map(withoutState), ports: ports.body.map(withoutState) };
}

/** The latest refusals of requests whose signature did not verify (kept apart from the audit log). */
async function unverifiedOf(agent: MeshAgent): Promise<AuditEntry[]> {
  const res = await api(agent.url, "GET", `${endpointPath(agent.endpointId, "log")}?limit=1`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.unverified.recent;
}

/** The endpoint id root's requests claim to come from (signed, so the audit log records it). */
const ROOT_ENDPOINT = "root-laptop";

/**
 * The target's own status and body inside the signed answer the hub brought
 * back (see `signAnswer`); a reply that is not a signed answer is returned as
 * it is (requests that do not parse, and the hub's own refusals, are unsigned).
 */
function answerOf(reply: HubReply): HubReply {
  let v;
  try {
    v = JSON.parse(reply.text);
  } catch {
    return reply;
  }
  if (v?.format !== ANSWER_FORMAT) return reply;
  assert.equal(v.status, reply.status, `the hub's status and the signed one differ: ${reply.text}`);
  return { ...reply, text: v.body };
}

/** Asserts a delivered request was refused with `status` and `code`; returns the error message. */
function assertRefused(reply: HubReply, status: number, code: string, what: string): string {
  assert.equal(reply.status, status, `${what}: ${reply.refused ?? reply.text}`);
  assert.equal(errorCode(reply.text), code, `${what}: ${reply.text}`);
  return JSON.parse(reply.text).error.message;
}

Deno.test("a hub-side sender cannot replay, alter, retarget or forge a signed management request", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob"]);
  const { alice, bob } = m.agents;
  const root = await issueUser(m.ca.url, "root");
  const mallory = await issueUser(m.ca.url, "mallory");

  // The hub-side position: a member session with a registered endpoint.
  await using hub = HubClient.connect(m.hub.port, userTls(mallory));
  const control = await hub.openControl("hub-side-probe", "probe");
  const probeId = control.id;
  assert.equal(control.status, 200, control.text);
  control.stream.on("data", () => {}); // later hub lines (CRL pushes) are not read here
  const deliver = async (to: string, request: SignedRequest | string) =>
    answerOf(
      await hub.request("POST", HUB_PATHS.manage(to), {
        body: typeof request === "string" ? request : JSON.stringify(request),
      }),
    );
  const svcBody = JSON.stringify({ host: "127.0.0.1", port: 7101, users: [], strict: false });
  const create = (path: string, body = svcBody) => ({
    method: "POST",
    path,
    body,
    target: bob.endpointId,
    from: ROOT_ENDPOINT,
  });
  const refusals: { to: MeshAgent; status: number; message: string; what: string }[] = [];
  const refused = async (
    to: MeshAgent,
    request: SignedRequest | string,
    status: number,
    codes: string[],
    what: string,
  ) => {
    const reply = await deliver(to.endpointId, request);
    assert.equal(reply.status, status, `${what}: ${reply.refused ?? reply.text}`);
    const code = errorCode(reply.text);
    assert.ok(codes.includes(code ?? ""), `${what}: ${reply.text}`);
    refusals.push({ to, status, message: JSON.parse(reply.text).error.message, what });
  };

  // Positive control: root's untouched request is applied — once, even when it arrives twice at
  // the same moment.
  const captured = await signRequest(create("services/tcp/legit"), signerOf(root));
  const both = await Promise.all([
    deliver(bob.endpointId, captured),
    deliver(bob.endpointId, captured),
  ]);
  const applied = both.find((r) => r.status === 201);
  assert.ok(applied, `neither copy was applied: ${JSON.stringify(both)}`);
  const twin = both.find((r) => r !== applied)!;
  assert.equal(twin.status, 401, twin.refused ?? twin.text);
  assert.equal(errorCode(twin.text), "replayed_request", twin.text);
  refusals.push({
    to: bob,
    status: 401,
    message: JSON.parse(twin.text).error.message,
    what: "the concurrent copy",
  });
  assert.deepEqual(JSON.parse(applied.text), {
    proto: "tcp",
    name: "legit",
    host: "127.0.0.1",
    port: 7101,
    users: [],
    strict: false,
  });
  const legitState = await stateOf(bob);
  const aliceState = await stateOf(alice);
  assert.deepEqual(legitState, {
    services: [{
      proto: "tcp",
      name: "legit",
      host: "127.0.0.1",
      port: 7101,
      users: [],
      strict: false,
    }],
    ports: [],
  });

  // Replayed as it was.
  await refused(bob, captured, 401, ["replayed_request"], "the same request again");

  // Altered after signing: body, path, method, the certificate sent along.
  const fresh = () => signRequest(create("services/tcp/legit"), signerOf(root));
  await refused(
    bob,
    { ...await fresh(), body: JSON.stringify({ host: "10.0.0.1", port: 22, users: ["*"] }) },
    401,
    ["bad_signature"],
    "body altered",
  );
  await refused(
    bob,
    { ...await fresh(), path: "services/tcp/evil" },
    401,
    ["bad_signature"],
    "path altered",
  );
  await refused(
    bob,
    { ...await fresh(), method: "DELETE", body: "" },
    401,
    ["bad_signature"],
    "a create turned into a delete",
  );
  await refused(
    bob,
    { ...await fresh(), certificate: bob.files.certificate },
    401,
    ["bad_signature"],
    "root's signature claimed for bob's certificate",
  );
  // The origin the audit log records is signed too: a hub cannot make a change look as if
  // it came from another endpoint.
  await refused(
    bob,
    { ...await fresh(), from: alice.endpointId },
    401,
    ["bad_signature"],
    "origin (from) altered",
  );

  // Retargeted: the target field changed and sent to that endpoint, or sent elsewhere unchanged.
  await refused(
    alice,
    { ...await fresh(), target: alice.endpointId },
    401,
    ["bad_signature", "wrong_target"],
    "target changed to alice and sent to alice",
  );
  await refused(alice, await fresh(), 403, ["wrong_target"], "bob's request sent to alice");
  await refused(
    bob,
    { ...await fresh(), target: alice.endpointId },
    403,
    ["wrong_target", "bad_signature"],
    "target changed to alice and sent to bob",
  );

  // Expired: signed a minute ago.
  await refused(
    bob,
    await signRequest(create("services/tcp/old"), signerOf(root), Date.now() - 60_000),
    401,
    ["expired_request"],
    "expired",
  );

  // Signed by "root" from another CA.
  await refused(
    bob,
    await signRequest(create("services/tcp/foreign"), await foreignSigner("root")),
    401,
    ["untrusted_certificate"],
    "root from another CA",
  );

  // The sender's own valid signature makes it mallory, who may not manage bob's endpoint.
  await refused(
    bob,
    await signRequest(create("services/tcp/mine"), signerOf(mallory)),
    403,
    ["not_allowed"],
    "signed by a member who is neither bob nor root",
  );

  // Not a signed request at all.
  await refused(bob, JSON.stringify({ method: "POST" }), 400, ["bad_signed_request"], "garbage");

  // Revoked signer: root's certificate is revoked at the CA. Until the hub has pushed the new
  // CRL bob's agent still accepts root (reads only here, so nothing changes); then never again.
  const del = await fetch(`${m.ca.url}/api/certificates/root`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());
  const read = {
    method: "GET",
    path: "services",
    body: "",
    target: bob.endpointId,
    from: ROOT_ENDPOINT,
  };
  const revokedRead = await eventually(
    async () => {
      const reply = await deliver(bob.endpointId, await signRequest(read, signerOf(root)));
      if (reply.status === 200) return undefined;
      return reply;
    },
    10_000,
    "bob's agent refusing root after the revocation",
  );
  assertRefused(revokedRead, 401, "revoked_certificate", "read by revoked root");
  await refused(
    bob,
    await signRequest(create("services/tcp/late"), signerOf(root)),
    401,
    ["revoked_certificate"],
    "change by revoked root",
  );

  // Nothing but the one legitimate request changed anything.
  assert.deepEqual(await stateOf(bob), legitState);
  assert.deepEqual(await stateOf(alice), aliceState);

  // Both logs show what came in: the one change from root, and every refusal with its status —
  // a request whose signature did not verify among the unverified ones, kept apart.
  const logs = new Map<MeshAgent, AuditEntry[]>([
    [bob, [...await auditLog(bob), ...await unverifiedOf(bob)]],
    [alice, [...await auditLog(alice), ...await unverifiedOf(alice)]],
  ]);
  const bobLog = logs.get(bob)!;
  const ok = bobLog.filter((e) => e.outcome === "ok");
  assert.deepEqual(
    ok.map(({ user, via, method, path, status }) => ({ user, via, method, path, status })),
    // The signed origin is recorded, not what the hub claims.
    [{
      user: "root",
      via: ROOT_ENDPOINT,
      method: "POST",
      path: "services/tcp/legit",
      status: 201,
    }],
  );
  for (const r of refusals) {
    const log = logs.get(r.to)!;
    assert.ok(
      log.some((e) =>
        e.status === r.status && e.outcome === r.message &&
        (e.via === probeId || e.via === ROOT_ENDPOINT)
      ),
      `${r.what}: no audit entry with ${r.status} "${r.message}" in ${JSON.stringify(log)}`,
    );
  }
  assert.ok(
    bobLog.some((e) =>
      e.status === 401 && e.outcome === JSON.parse(revokedRead.text).error.message
    ),
    "the refused read of the revoked signer is in bob's log",
  );
  // Refused requests never appear under the name they claimed.
  for (const e of [...logs.values()].flat()) {
    if (e.status >= 400) assert.notEqual(e.user, "root", JSON.stringify(e));
  }
});

Deno.test("a captured management request cannot be replayed after the target agent restarts", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob"]);
  const { bob } = m.agents;
  const root = await issueUser(m.ca.url, "root");
  const mallory = await issueUser(m.ca.url, "mallory");
  await using hub = HubClient.connect(m.hub.port, userTls(mallory));
  const control = await hub.openControl("hub-side-probe", "probe");
  assert.equal(control.status, 200, control.text);
  control.stream.on("data", () => {});
  const deliver = (request: SignedRequest) =>
    hub.request("POST", HUB_PATHS.manage(bob.endpointId), { body: JSON.stringify(request) })
      .then(answerOf);

  // bob has a service; root deletes it with a signed request that the hub side keeps a copy of.
  const svc = { host: "127.0.0.1", port: 7201, users: [], strict: false };
  const made = await api(bob.url, "POST", endpointPath(bob.endpointId, "services/tcp/x"), svc);
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const captured = await signRequest(
    {
      method: "DELETE",
      path: "services/tcp/x",
      body: "",
      target: bob.endpointId,
      from: ROOT_ENDPOINT,
    },
    signerOf(root),
  );
  const deleted = await deliver(captured);
  assert.equal(deleted.status, 200, deleted.refused ?? deleted.text);
  const replay = await deliver(captured);
  assert.equal(errorCode(replay.text), "replayed_request", replay.text);

  // bob puts the service back and restarts his agent.
  const remade = await api(bob.url, "POST", endpointPath(bob.endpointId, "services/tcp/x"), svc);
  assert.equal(remade.status, 201, JSON.stringify(remade.body));
  await restartJoinedAgent(h, bob);

  // The old request is still refused (replayed, or expired if the restart took that long)...
  const after = await deliver(captured);
  assert.equal(after.status, 401, `replay after the restart: ${after.refused ?? after.text}`);
  assert.ok(
    ["replayed_request", "expired_request"].includes(errorCode(after.text) ?? ""),
    after.text,
  );
  // ...and bob's service is still there.
  const services = await api(bob.url, "GET", endpointPath(bob.endpointId, "services"));
  assert.deepEqual(services.body.map(withoutState), [{ proto: "tcp", name: "x", ...svc }]);
});
