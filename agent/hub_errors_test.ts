import assert from "node:assert/strict";
import { createServer } from "node:net";
import { fingerprintOf } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { describeCa, explainHubFailure } from "./hub_errors.ts";
import { type HubFailure, HubLink, REFUSED_BY_HUB } from "./hub_link.ts";
import { freePort } from "../tests/fixtures/net_helpers.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { RogueHub } from "../tests/fixtures/rogue_hub.ts";
import { memberConfig, memberHello } from "../tests/fixtures/member_config.ts";

const CA_NAME = 'CA "CN=test"';

Deno.test("each kind of dial failure is explained in words a user can act on", () => {
  const cases: [string, RegExp][] = [
    ["connect ECONNREFUSED 127.0.0.1:8888", /nothing listens on hub\.lan:8888 .*8888 by default/],
    ["getaddrinfo ENOTFOUND hub.lan", /host name "hub\.lan" is not known here/],
    ["failed to lookup address information: Name or service not known", /not known here/],
    [
      "Hostname/IP does not match certificate's altnames: Host: hub.lan",
      /does not name "hub\.lan".*--names=hub\.lan/,
    ],
    ["invalid peer certificate: NotValidForName", /does not name "hub\.lan"/],
    ["received corrupt message of type InvalidContentType", /does not answer as a ztm hub/],
    ["wrong version number", /does not answer as a ztm hub/],
    ["read ECONNRESET", /does not answer as a ztm hub/],
    ["invalid peer certificate: UnknownIssuer", /from another CA, not this mesh's CA "CN=test"/],
    ["unable to verify the first certificate", /from another CA/],
    ["invalid peer certificate: BadSignature", /from another CA/],
    [REFUSED_BY_HUB, /^the hub refused this certificate: revoked, expired, or from another CA/],
    [
      "no answer from the hub within 10 s",
      /^no answer from hub\.lan:8888 \(within 10 s\): a firewall dropping packets/,
    ],
  ];
  for (const [why, expected] of cases) {
    assert.match(explainHubFailure("hub.lan:8888", why, CA_NAME), expected, why);
  }
  // A reason none of these fit is passed on as it is.
  assert.equal(
    explainHubFailure("hub.lan:8888", "hub closed the session", CA_NAME),
    "hub closed the session",
  );
  // The host is named without its port, also for IPv6.
  assert.match(
    explainHubFailure("[::1]:9", "invalid peer certificate: NotValidForName", CA_NAME),
    /does not name "::1"/,
  );
});

Deno.test("a CA is described by its subject and fingerprint; a PEM that is not one as just CA", async () => {
  const ca = await newCa();
  const fingerprint = await fingerprintOf(ca.certificate);
  assert.equal(
    await describeCa(ca.pem),
    `CA "${ca.certificate.subject}" (SHA-256 fingerprint ${fingerprint.slice(0, 16)}…)`,
  );
  assert.equal(await describeCa("not a certificate"), "CA");
  assert.equal(await describeCa(""), "CA");
});

/** The failures of one round of dials of a link to `hub` with a member of `ca`. */
async function failuresDialling(ca: TestCa, hub: string): Promise<HubFailure[]> {
  const user = await newLeaf(ca, { name: "alice", role: "peer" });
  const link = new HubLink({
    config: memberConfig(ca, user, [hub]),
    log: new Logger("agent", { sink: () => {} }),
    hello: memberHello,
    onOpen: () => {},
    onManage: () => Promise.resolve({ status: 404, body: "{}" }),
  });
  try {
    link.start();
    const failures = await link.firstSession(10_000);
    assert.ok(failures, "the link connected");
    return failures;
  } finally {
    await link.close();
  }
}

// The patterns must match what this runtime's socket and TLS stack really say.
Deno.test("real dial failures are explained: nothing listening, no TLS there, a hub of another CA", async () => {
  const ca = await newCa();
  const caName = await describeCa(ca.pem);

  const closed = `127.0.0.1:${await freePort()}`;
  const [refused] = await failuresDialling(ca, closed);
  assert.match(explainHubFailure(closed, refused.why, caName), /^nothing listens on 127\.0\.0\.1:/);

  // A plain HTTP server (the CA's port, say) answers TLS with text.
  const http = createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  try {
    const plain = `127.0.0.1:${(http.address() as { port: number }).port}`;
    const [notTls] = await failuresDialling(ca, plain);
    assert.match(explainHubFailure(plain, notTls.why, caName), /does not answer as a ztm hub/);
  } finally {
    await new Promise((resolve) => http.close(resolve));
  }

  await using rogue = await RogueHub.start();
  const [foreign] = await failuresDialling(ca, rogue.address);
  assert.equal(
    explainHubFailure(rogue.address, foreign.why, caName),
    `the hub's certificate is from another CA, not this mesh's ${caName}`,
  );
});
