/**
 * Renewal before expiry, with real processes and short lifetimes: a CA that
 * issues 60 s certificates to users and hubs (`--cert-lifetime=60s
 * --hub-cert-lifetime=60s`; certificates start a minute back, so each is due
 * for renewal 20 s after it is issued), a hub, and two agents joined with
 * invites. For `ZTM_RENEWAL_SOAK_S` seconds (default 100) a tunnel carries an
 * echo every 250 ms over one TCP connection that stays open throughout; every
 * agent and the hub renew at least 3 times, no hub session is dropped, the
 * connection never breaks, the CRL stays empty (renewals supersede, they do
 * not revoke), and a new connection through the mapping works at the end.
 *
 * Then the attacks: a member renewing another member's certificate (through
 * the hub, and straight at the CA), asking for another user in its CSR, and
 * a replay of a renewal the hub carried.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { generateKeyPair, keyPairOfPem, serialOf, x509 } from "../../shared/certs.ts";
import { signRenewal } from "@ztm/shared/renewal";
import { api, eventually, Harness, type LogLine } from "../fixtures/harness.ts";
import { agentFlags, ztmOk } from "../fixtures/cli_helpers.ts";
import { inviteFor } from "../fixtures/ca_helpers.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import { freePort, openConnection, startEchoServer } from "../fixtures/net_helpers.ts";
import { rememberPrivateKey } from "../fixtures/secret_scan.ts";

const SOAK_S = Number(Deno.env.get("ZTM_RENEWAL_SOAK_S") ?? "100");
/** Lifetime of the soak's certificates (`ztm ca --cert-lifetime`), 60s by default. */
const LIFETIME = Deno.env.get("ZTM_RENEWAL_LIFETIME") ?? "60s";

function meshRow(database: string): { certificate: string; private_key: string } {
  const db = new DatabaseSync(database, { readOnly: true });
  try {
    return db.prepare("SELECT certificate, private_key FROM meshes").get() as {
      certificate: string;
      private_key: string;
    };
  } finally {
    db.close();
  }
}

function count(lines: LogLine[], msg: string): number {
  return lines.filter((l) => l.msg === msg).length;
}

/** Alice's renewal of `serial` as `user`, signed with the key of PEM `keyPem`. */
async function signedRenewal(keyPem: string, serial: string, user: string) {
  return await signRenewal(await keyPairOfPem(keyPem), serial, user);
}

Deno.test(`agents and the hub renew ${LIFETIME} certificates for ${SOAK_S} s without dropping a session or a connection`, async () => {
  await using h = new Harness();
  const ca = await h.startCa({
    args: [`--cert-lifetime=${LIFETIME}`, `--hub-cert-lifetime=${LIFETIME}`],
  });
  const hub = await h.startHub(ca);
  await hub.waitForLog((l) => l.msg === "hub announced to the ca");
  await using echo = await startEchoServer();

  const office = await h.startAgent({ name: "office" });
  const laptop = await h.startAgent({ name: "laptop" });
  for (
    const [agent, user, name] of [[office, "bob", "office"], [laptop, "alice", "laptop"]] as const
  ) {
    const invite = await inviteFor(ca.url, user);
    const t0 = performance.now();
    const res = await api(agent.url, "POST", "/api/meshes/work?wait=20", {
      invite,
      agent: { name },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    console.log(
      `${name}: invite to joined and connected (API): ${Math.round(performance.now() - t0)} ms`,
    );
    rememberPrivateKey(meshRow(agent.database).private_key);
  }
  const officeId = (await api(office.url, "GET", "/api/meshes/work")).body.endpoint.id;
  const laptopId = (await api(laptop.url, "GET", "/api/meshes/work")).body.endpoint.id;
  let res = await api(
    office.url,
    "POST",
    `/api/meshes/work/endpoints/${officeId}/services/tcp/echo`,
    {
      host: "127.0.0.1",
      port: echo.port,
      users: ["alice"],
    },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const mapped = await freePort();
  res = await api(
    laptop.url,
    "POST",
    `/api/meshes/work/endpoints/${laptopId}/ports/127.0.0.1/tcp/${mapped}`,
    {
      target: { service: "echo" },
    },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const hubSessionsAt = hub.logs.length;

  const conn = await eventually(() => openConnection(mapped), 15_000, "the mapping answers");
  const started = Date.now();
  let echoes = 0;
  const enc = new TextEncoder();
  while (Date.now() - started < SOAK_S * 1000) {
    const line = enc.encode(`ping ${echoes}\n`);
    const back = await conn.exchange(line, 10_000);
    assert.deepEqual(back, line, `echo ${echoes} came back changed`);
    echoes++;
    await new Promise((r) => setTimeout(r, 250));
  }
  conn.close();
  console.log(`${echoes} echoes over one connection in ${SOAK_S} s`);

  const hubLines = hub.logs;
  const renewed = {
    hub: count(hubLines, "hub certificate renewed"),
    hubSessions: count(hubLines, "session certificate renewed"),
    office: count(office.logs, "certificate renewed"),
    laptop: count(laptop.logs, "certificate renewed"),
    officeAdopted: count(office.logs, "hub certificate renewal adopted"),
    laptopAdopted: count(laptop.logs, "hub certificate renewal adopted"),
  };
  console.log("renewals seen:", JSON.stringify(renewed));
  const problems = [hub, office, laptop].flatMap((p) =>
    p.logs.filter((l) => l.level === "warn" || l.level === "error").map((l) =>
      `${p.name}: ${JSON.stringify(l)}`
    )
  );
  // Agents adopt a renewed hub certificate lazily, before the one they hold expires.
  const wanted: Record<string, number> = {
    hub: 3,
    hubSessions: 6,
    office: 3,
    laptop: 3,
    officeAdopted: 1,
    laptopAdopted: 1,
  };
  for (const [who, n] of Object.entries(renewed)) {
    assert.ok(n >= wanted[who], `${who}: ${n} renewals\n${problems.slice(0, 30).join("\n")}`);
  }
  const dropped = hubLines.slice(hubSessionsAt).filter((l) =>
    l.msg === "session closed" && (l.user === "alice" || l.user === "bob")
  );
  // Nor was any other connection of theirs admitted and closed (a probe, a reconnect).
  assert.deepEqual(
    hubLines.slice(hubSessionsAt).filter((l) => l.msg === "peer admitted"),
    [],
    "no new session",
  );
  assert.deepEqual(dropped, [], "no agent session was dropped");
  for (const agent of [office, laptop]) {
    assert.deepEqual(
      agent.logs.filter((l) => /disconnecting|reconnecting|link lost/.test(String(l.msg))),
      [],
    );
    const mesh = (await api(agent.url, "GET", "/api/meshes/work")).body;
    assert.equal(mesh.status.connected, true);
    assert.ok(mesh.certificate.renewal.renewals >= 3, JSON.stringify(mesh.certificate));
    assert.equal(mesh.certificate.renewal.lastError, null);
    // The stored certificate is the newest: a restart would use it.
    const stored = new x509.X509Certificate(meshRow(agent.database).certificate);
    assert.equal(serialOf(stored), mesh.certificate.serial);
  }
  // Renewals supersede; they do not revoke: the CRL lists nothing.
  const crl = await (await fetch(`${ca.url}/api/crl`)).text();
  assert.equal(new x509.X509Crl(crl).entries.length, 0);
  const certs = await (await fetch(`${ca.url}/api/certificates`)).json();
  const laptopCerts = certs.filter((c: { endpoint: string }) => c.endpoint === "laptop");
  assert.ok(laptopCerts.length >= 4);
  assert.equal(laptopCerts.filter((c: { superseded: boolean }) => !c.superseded).length, 1);
  // A new connection after the renewals works (the agents serve their renewed certificates).
  const fresh = await openConnection(mapped);
  const back = await fresh.exchange(enc.encode("after\n"));
  assert.equal(new TextDecoder().decode(back), "after\n");
  fresh.close();
});

Deno.test("a member cannot renew another member's certificate, change its user, or replay a renewal", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  await hub.waitForLog((l) => l.msg === "hub announced to the ca");
  const caPem = await (await fetch(`${ca.url}/api/certificates/ca`)).text();
  const device = async (user: string, endpoint: string) => {
    const route = `${ca.url}/api/certificates/${user}/endpoints/${endpoint}`;
    const privateKey = await (await fetch(route, { method: "POST" })).text();
    rememberPrivateKey(privateKey);
    const certificate = await (await fetch(route)).text();
    return {
      ca: caPem,
      certificate,
      privateKey,
      serial: serialOf(new x509.X509Certificate(certificate)),
    };
  };
  const alice = await device("alice", "laptop");
  const bob = await device("bob", "office");
  await using client = HubClient.connect(hub.port, userTls(alice));
  const post = (body: unknown) =>
    client.request("POST", "/api/renewals", { body: JSON.stringify(body) });

  // Through the hub: alice's session may renew only her own certificate.
  const forBob = await post(await signedRenewal(alice.privateKey, bob.serial, "bob"));
  assert.equal(forBob.status, 403, forBob.text);
  assert.match(forBob.text, /not_your_certificate/);
  // Straight at the CA, signed by her key for bob's serial: the proof fails.
  const atCa = await fetch(`${ca.url}/api/renewals`, {
    method: "POST",
    body: JSON.stringify(await signedRenewal(alice.privateKey, bob.serial, "bob")),
  });
  assert.equal(atCa.status, 403);
  assert.equal((await atCa.json()).error.code, "bad_proof");
  // Her own serial, but a CSR naming bob: refused.
  const asBob = await post(await signedRenewal(alice.privateKey, alice.serial, "bob"));
  assert.equal(asBob.status, 403, asBob.text);
  assert.match(asBob.text, /csr_name_mismatch/);
  // Her own serial with another key's CSR: refused.
  const other = await generateKeyPair();
  const otherPem = x509.PemConverter.encode(
    await crypto.subtle.exportKey("pkcs8", other.privateKey),
    "PRIVATE KEY",
  );
  const wrongKey = await signedRenewal(otherPem, alice.serial, "alice");
  const stolen = await post(wrongKey);
  assert.equal(stolen.status, 403, stolen.text);
  assert.match(stolen.text, /bad_proof/);

  // A good renewal works, keeps the endpoint, and the hub cannot replay it.
  const good = await signedRenewal(alice.privateKey, alice.serial, "alice");
  const ok = await post(good);
  assert.equal(ok.status, 201, ok.text);
  const renewed = JSON.parse(ok.text);
  assert.equal(renewed.endpoint, "laptop");
  assert.equal(renewed.renewedFrom, alice.serial);
  const replay = await fetch(`${ca.url}/api/renewals`, {
    method: "POST",
    body: JSON.stringify(good),
  });
  assert.equal(replay.status, 409);
  assert.equal((await replay.json()).error.code, "not_live");
  // A renewal signed long ago is refused.
  const stale = { ...good, time: new Date(Date.now() - 3_600_000).toISOString() };
  const late = await fetch(`${ca.url}/api/renewals`, {
    method: "POST",
    body: JSON.stringify(stale),
  });
  assert.equal(late.status, 403);
  await eventually(() => hub.logs.some((l) => l.msg === "session certificate renewed"), 5_000);
});

Deno.test("an agent whose renewal keeps failing says so in plain words before its certificate expires", async () => {
  await using h = new Harness();
  const ca = await h.startCa({ args: ["--cert-lifetime=60s"] });
  const hub = await h.startHub(ca);
  await hub.waitForLog((l) => l.msg === "hub announced to the ca");
  const agent = await h.startAgent();
  const res = await api(agent.url, "POST", "/api/meshes/work?wait=20", {
    invite: await inviteFor(ca.url, "alice"),
    agent: { name: "box" },
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  rememberPrivateKey(meshRow(agent.database).private_key);
  await ca.stop(); // the hub stays up; renewals now fail at the CA
  const line = await agent.waitForLog((l) => l.msg === "certificate renewal keeps failing", 60_000);
  assert.match(
    String(line.err),
    /expires at .* and renewing it keeps failing .*the hub will refuse it/,
  );
  const mesh = (await api(agent.url, "GET", "/api/meshes/work")).body;
  assert.equal(mesh.status.connected, true, "still connected before expiry");
  assert.match(mesh.certificate.renewal.warning, /keeps failing/);
  const status = await ztmOk(["status", ...agentFlags(agent)]);
  assert.match(status, /work: CERTIFICATE RENEWAL FAILING: This endpoint's certificate expires at/);
});
