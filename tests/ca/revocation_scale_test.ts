/**
 * Revocation at the size a long-lived mesh reaches, with real processes: a CA
 * whose database holds 100,000 revoked certificates still valid (and 2,000
 * expired ones, which leave the CRL), a hub started fresh on it, and agents.
 * Before, `@peculiar/x509`'s parser refused DER of more than 10,000 nodes
 * (~1,250 entries): the hub kept no CRL and admitted every revoked user, and
 * agents ignored every CRL. Timing lives in `bench/revoke.ts`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { api, eventually, Harness, issueUser, type LogLine } from "../fixtures/harness.ts";
import { agentFlags, ztm } from "../fixtures/cli_helpers.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import { meshStatus, never, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { fillRevocations } from "../fixtures/crl_fill.ts";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { verifyCrl } from "@ztm/shared/crl";

const VALID = 100_000;
const EXPIRED = 2_000;
const MINUTE = 60_000;

Deno.test("a CRL of 100,000 entries is signed by the CA, verified by the hub and agents, and enforced", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-ca-");
  const old = fillRevocations(join(dir, "ca.db"), VALID, EXPIRED);
  const ca = await h.startCa({ dir });

  // The CA signs them all, but not the expired ones; the CRL verifies.
  const res = await fetch(`${ca.url}/api/crl`, { signal: AbortSignal.timeout(2 * MINUTE) });
  const pem = await res.text();
  assert.equal(res.status, 200, pem.slice(0, 300));
  const crl = await verifyCrl(pem, await (await fetch(`${ca.url}/api/certificates/ca`)).text());
  assert.equal(crl.serials.size, VALID);
  assert.ok(crl.serials.has(old[0]) && crl.serials.has(old[VALID - 1]));

  // A hub started fresh verifies it and holds it.
  const hub = await h.startHub(ca);
  const applied = (l: LogLine) => l.msg === "crl applied";
  const first = await hub.waitForLog(applied, 2 * MINUTE);
  assert.equal(first.count, VALID);

  const alice = await issueUser(ca.url, "alice");
  const bob = await issueUser(ca.url, "bob");
  const a = await startJoinedAgent(h, hub.address, alice);
  const b = await startJoinedAgent(h, hub.address, bob);
  // The agent fetched and verified the hub's CRL when it connected.
  const adopted = await a.proc.waitForLog((l) => l.msg === "crl adopted", MINUTE);
  assert.equal(adopted.count, VALID);

  // Revoking bob: the CA signs 100,001 entries, the hub applies them and cuts bob off.
  const del = await fetch(`${ca.url}/api/certificates/bob`, { method: "DELETE" });
  assert.equal(del.status, 200, await del.text());
  const bobSerial = serialOf(parseCertificate(bob.certificate));
  const second = await hub.waitForLog((l) => applied(l) && l.count === VALID + 1, 2 * MINUTE);
  assert.ok(second);
  const closed = await hub.waitForLog(
    (l) => l.msg === "session closed: certificate revoked" && l.user === "bob",
    MINUTE,
  );
  assert.equal(closed.serial, bobSerial);
  // Alice's agent takes the new CRL the hub announced.
  await a.proc.waitForLog((l) => l.msg === "crl adopted" && l.count === VALID + 1, 2 * MINUTE);
  // Bob stays out.
  await never(
    async () => (await meshStatus(b)).status.connected === true,
    3_000,
    "bob reconnected after his revocation",
  );
  assert.ok(
    hub.logs.some((l) => l.msg === "peer refused" && /revoked/.test(String(l.err))),
    "the hub refused bob's redial as revoked",
  );

  // No alarm anywhere: the hub's status and alice's mesh status say all is well.
  await using client = HubClient.connect(hub.port, userTls(alice));
  const status = await client.request("GET", "/api/status");
  assert.equal(status.status, 200, status.text);
  const revocations = JSON.parse(status.text).revocations;
  assert.equal(revocations.alarm, null);
  assert.equal(revocations.crlNumber, 2);
  assert.equal((await meshStatus(a)).status.crlAlarm, undefined);
  assert.ok(!hub.logs.some((l) => l.level === "error"), "the hub logged an error");
  const gone = await api(a.url, "GET", "/api/meshes/test");
  assert.equal(gone.body.status.connected, true);
});

/** `pem` with one base64 character inside its signed part changed. */
function tampered(pem: string): string {
  const at = pem.indexOf("\n", pem.indexOf("-----BEGIN")) + 60;
  return pem.slice(0, at) + (pem[at] === "A" ? "B" : "A") + pem.slice(at + 1);
}

Deno.test("a CRL that does not verify is an alarm: hub status and error log, agent status and ztm status", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const caPem = await (await fetch(`${ca.url}/api/certificates/ca`)).text();
  const signed = await (await fetch(`${ca.url}/api/crl`)).text();
  await verifyCrl(signed, caPem);
  // The CA's stored CRL is altered (a bad disk, a bad restore, an attacker): it serves it.
  const db = new DatabaseSync(ca.database);
  db.prepare("UPDATE crl SET pem = ?").run(tampered(signed));
  db.close();
  await assert.rejects(verifyCrl(await (await fetch(`${ca.url}/api/crl`)).text(), caPem));

  const hub = await h.startHub(ca);
  const logged = await hub.waitForLog((l) => l.msg === "crl refused", MINUTE);
  assert.equal(logged.level, "error");
  assert.match(String(logged.err), /CRL from the CA refused: CRL signature does not verify/);
  const alice = await issueUser(ca.url, "alice");
  await using client = HubClient.connect(hub.port, userTls(alice));
  const hubStatus = async () =>
    JSON.parse((await client.request("GET", "/api/status")).text).revocations;
  assert.match(String((await hubStatus()).alarm), /does not verify/);
  assert.equal((await hubStatus()).crlNumber, null, "the hub took the tampered CRL");

  // The next revocation makes the CA sign afresh: the hub takes it and the alarm clears.
  await issueUser(ca.url, "bob");
  assert.equal((await fetch(`${ca.url}/api/certificates/bob`, { method: "DELETE" })).status, 200);
  await eventually(async () => (await hubStatus()).alarm === null, MINUTE, "the alarm cleared");
  assert.equal((await hubStatus()).crlNumber, 2);

  // An agent whose stored CRL was altered says so in its mesh status and in `ztm status`.
  const a = await startJoinedAgent(h, hub.address, alice);
  const stored = join(`${a.proc.database}-crl`, "test.pem");
  await eventually(async () => (await Deno.stat(stored)).isFile, MINUTE, "the agent's stored CRL");
  await hub.stop();
  await a.proc.stop();
  await Deno.writeTextFile(stored, tampered(await Deno.readTextFile(stored)));
  a.proc = await h.startAgent({ dir: a.proc.dir, name: a.proc.name });
  a.url = a.proc.url;
  const error = await a.proc.waitForLog((l) => l.msg === "crl refused", MINUTE);
  assert.equal(error.level, "error");
  assert.match(String((await meshStatus(a)).status.crlAlarm), /stored CRL refused/);
  const out = await ztm(["status", ...agentFlags(a.proc)]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(
    out.stdout,
    /test: REVOCATION ALARM: stored CRL refused: CRL signature does not verify/,
  );
});
