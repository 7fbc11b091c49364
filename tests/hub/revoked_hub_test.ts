/**
 * A revoked hub cannot talk its way back in, with real processes. The agent
 * keeps the newest CRL it has verified (on disk, so a restart does not forget
 * it) and checks the hub against that one: a revoked hub that serves an
 * older CA-signed CRL (one from before its revocation) or answers 503 (no
 * CRL) is refused all the same. Before, the agent checked the hub against
 * whatever the hub served, and forgot every CRL when it restarted.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, Harness, issueUser, type LogLine } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";
import { type MeshAgent, meshStatus, never, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { verifyCrl } from "@ztm/shared/crl";

/**
 * Waits until the agent has dialled `hub` (the hub admitted its TLS session)
 * and then asserts its link stays down with the hub named revoked.
 */
async function refused(agent: MeshAgent, hub: { logs: LogLine[] }): Promise<void> {
  await eventually(
    () => hub.logs.some((l) => l.msg === "peer admitted" && l.user === "alice"),
    30_000,
    "the agent dialled the hub",
  );
  await eventually(
    async () => /revoked/.test(String((await meshStatus(agent)).status.lastError)),
    20_000,
    "the agent saying the hub is revoked",
  );
  await never(
    async () => (await meshStatus(agent)).status.connected === true,
    3_000,
    "the agent connected to the revoked hub",
  );
  assert.ok(!hub.logs.some((l) => l.msg === "endpoint online"), "the agent went online there");
}

Deno.test("an agent refuses a revoked hub that serves an older CRL or none, also after a restart", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const port = await freePort();
  const hubArgs = [`--listen=127.0.0.1:${port}`];
  const hub = await h.startHub(ca, { args: hubArgs });
  await hub.waitForLog((l) => l.msg === "crl applied");
  const alice = await issueUser(ca.url, "alice");
  const agent = await startJoinedAgent(h, hub.address, alice);

  // The CRL from before the revocation: CA-signed, and not listing the hub.
  const crlFile = join(hub.dir, "crl.pem");
  const older = await Deno.readTextFile(crlFile);
  const hubSerial = serialOf(parseCertificate(await Deno.readTextFile(join(hub.dir, "hub.crt"))));
  const caPem = await Deno.readTextFile(join(hub.dir, "ca.crt"));
  assert.ok(!(await verifyCrl(older, caPem)).serials.has(hubSerial));

  // The administrator revokes the hub; the agent takes the new CRL and leaves it.
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const del = await fetch(`${ca.url}/api/hub-certificates/${hubSerial}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 200, await del.text());
  await agent.proc.waitForLog((l) => l.msg === "hub certificate revoked; disconnecting", 20_000);

  // Whoever holds the hub's key brings it back on the same address, cut off from the CA
  // (port 9 answers nothing), serving the older CRL.
  const deadCa = { ...ca, url: "http://127.0.0.1:9" };
  await hub.stop();
  await Deno.writeTextFile(crlFile, older);
  const rogue = await h.startHub(deadCa, { dir: hub.dir, args: hubArgs });
  await refused(agent, rogue);
  const from = rogue.logs.length;

  // An agent restart does not forget the newest CRL.
  await agent.proc.stop();
  agent.proc = await h.startAgent({ dir: agent.proc.dir, name: agent.proc.name });
  agent.url = agent.proc.url;
  await eventually(
    () => rogue.logs.slice(from).some((l) => l.msg === "peer admitted" && l.user === "alice"),
    30_000,
    "the restarted agent dialled the hub",
  );
  await refused(agent, rogue);

  // Nor does a hub that answers 503: it has no CRL at all.
  await rogue.stop();
  await Deno.remove(crlFile);
  const bare = await h.startHub(deadCa, { dir: hub.dir, args: hubArgs });
  await refused(agent, bare);
});
