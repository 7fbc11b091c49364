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
import { api, Harness, issueUser, type LogLine } from "./harness.ts";
import { HubClient, userTls } from "./hub_client.ts";
import { meshStatus, never, startJoinedAgent } from "./mesh_fixture.ts";
import { fillRevocations } from "./crl_fill.ts";
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
  assert.equal((await meshStatus(a)).status.crlAlarm, null);
  assert.ok(!hub.logs.some((l) => l.level === "error"), "the hub logged an error");
  const gone = await api(a.url, "GET", "/api/meshes/test");
  assert.equal(gone.body.status.connected, true);
});
