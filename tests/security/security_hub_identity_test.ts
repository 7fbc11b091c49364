/**
 * Agents check the hub they dial, with real processes: a hub certificate that
 * does not name the dialled address, one of the wrong role (a user's
 * clientAuth certificate from the mesh CA, with the right names), and a
 * revoked one (also when the link was up at the revocation) are all refused, the agent stays up and says why — and in each
 * test the same agent reaches an honest hub (or the same hub by its right
 * name), so the refusal is the check and not a broken setup.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { api, eventually, Harness, issueUser, type UserFiles } from "../fixtures/harness.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import { meshStatus, never } from "../fixtures/mesh_fixture.ts";
import { meshCaOf, newLeaf } from "../fixtures/test_pki.ts";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { verifyCrl } from "@ztm/shared/crl";

/** Joins `mesh` on the agent at `url` with `files`, dialling `hub`. */
async function join_(url: string, mesh: string, files: UserFiles, hub: string): Promise<void> {
  const res = await api(url, "POST", `/api/meshes/${mesh}`, {
    ca: files.ca,
    agent: {
      name: `${files.user}-${mesh}`,
      certificate: files.certificate,
      privateKey: files.privateKey,
    },
    bootstraps: [hub],
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

/** Asserts the agent's link to `mesh` stays down with a reason matching `why`; returns it. */
async function assertRefused(
  agent: { url: string; exited: boolean; tail(): string },
  mesh: string,
  why: RegExp,
): Promise<string> {
  const probe = { url: agent.url };
  await eventually(
    async () => typeof (await meshStatus(probe, mesh)).status.lastError === "string",
    15_000,
    `${mesh}: a connection attempt`,
  );
  await never(
    async () => (await meshStatus(probe, mesh)).status.connected === true,
    2_000,
    `${mesh} connected`,
  );
  const status = (await meshStatus(probe, mesh)).status;
  assert.match(String(status.lastError), why, `${mesh}: lastError`);
  assert.equal(agent.exited, false, `the agent died:\n${agent.tail()}`);
  return String(status.lastError);
}

async function waitUp(url: string, mesh: string): Promise<void> {
  await eventually(
    async () => (await meshStatus({ url }, mesh)).status.connected === true,
    15_000,
    `${mesh} connected`,
  );
}

Deno.test("an agent refuses a hub whose certificate does not name the dialled address", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  // Listening on every loopback address; its certificate names localhost and 127.0.0.1 only.
  const hub = await h.startHub(ca, { args: ["--listen=0.0.0.0:0"] });
  const alice = await issueUser(ca.url, "alice");
  const agent = await h.startAgent({ name: "agent-alice" });

  await join_(agent.url, "right", alice, `127.0.0.1:${hub.port}`);
  await join_(agent.url, "wrong", alice, `127.0.0.2:${hub.port}`);
  await waitUp(agent.url, "right");
  const why = await assertRefused(agent, "wrong", /127\.0\.0\.2|altname|name|certificate/i);
  console.log(`dialled 127.0.0.2: ${why}`);
});

Deno.test("an agent refuses a hub that presents a user (clientAuth) certificate of the mesh CA", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const honest = await h.startHub(ca);
  // The impostor's data dir is seeded with a certificate the mesh CA really signed, naming
  // localhost — but a user's, not a hub's. The hub takes what it finds there.
  const dir = await h.tempDir("ztm-hub-impostor-");
  const meshCa = await meshCaOf(ca);
  const userCert = await newLeaf(meshCa, {
    name: "hub",
    role: "client",
    altNames: ["localhost", "127.0.0.1"],
  });
  await Deno.writeTextFile(join(dir, "ca.crt"), meshCa.pem);
  await Deno.writeTextFile(join(dir, "hub.crt"), userCert.certificate, { mode: 0o600 });
  await Deno.writeTextFile(join(dir, "hub.key"), userCert.privateKey, { mode: 0o600 });
  const impostor = await h.startHub(ca, { dir });
  assert.ok(!impostor.logs.some((l) => l.msg === "hub certificate issued"), "it enrolled anew");

  const alice = await issueUser(ca.url, "alice");
  const agent = await h.startAgent({ name: "agent-alice" });
  await join_(agent.url, "honest", alice, honest.address);
  await join_(agent.url, "impostor", alice, impostor.address);
  await waitUp(agent.url, "honest");
  const why = await assertRefused(agent, "impostor", /certificate|role|purpose|usage/i);
  console.log(`user-role hub certificate: ${why}`);
  assert.ok(!impostor.logs.some((l) => l.msg === "peer admitted"), "the agent talked to it");
});

Deno.test("an agent refuses a hub whose certificate is revoked", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const agent = await h.startAgent({ name: "agent-alice" });
  await join_(agent.url, "before", alice, hub.address);
  await waitUp(agent.url, "before");

  // The administrator revokes the hub's certificate by serial, with the CA's token.
  const hubSerial = serialOf(parseCertificate(await Deno.readTextFile(join(hub.dir, "hub.crt"))));
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const revokeHub = (serial: string, auth = token) =>
    fetch(`${ca.url}/api/hub-certificates/${serial}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${auth}` },
    });
  const refusals: [string, Response, number][] = [
    ["without the token", await revokeHub(hubSerial, "wrong"), 401],
    ["a serial that is not hex", await revokeHub("zz-top"), 400],
    ["an unknown serial", await revokeHub("abcdef0123"), 404],
    ["a user's serial", await revokeHub(serialOf(parseCertificate(alice.certificate))), 404],
  ];
  for (const [what, res, status] of refusals) {
    assert.equal(res.status, status, `${what}: ${await res.text()}`);
  }
  const revoked = await revokeHub(hubSerial);
  const answer = await revoked.text();
  assert.equal(revoked.status, 200, answer);
  assert.equal(JSON.parse(answer).revoked.serial, hubSerial);
  assert.equal((await revokeHub(hubSerial)).status, 404, "revoking it twice");
  // Wait until the hub serves a CRL listing its own serial.
  await using client = HubClient.connect(hub.port, userTls(alice));
  await eventually(
    async () => {
      const r = await client.request("GET", "/api/crl");
      return r.status === 200 && (await verifyCrl(r.text, alice.ca)).serials.has(hubSerial);
    },
    15_000,
    "the hub's CRL listing its own certificate",
  );

  await join_(agent.url, "after", alice, hub.address);
  const why = await assertRefused(agent, "after", /revoked/i);
  console.log(`revoked hub: ${why}`);
  // The link that was up when the hub was revoked leaves it on the pushed CRL, and stays out.
  const before = await assertRefused(agent, "before", /revoked/i);
  console.log(`link up at the revocation: ${before}`);
});
