import assert from "node:assert/strict";
import { parseCertificate, publicKeyHex, serialOf } from "@ztm/shared/certs";
import { checkHubIdentity, hubCertificateFacts } from "./hub_identity.ts";
import { H2Pair } from "../tests/fixtures/h2_pair.ts";

Deno.test("a hub certificate that names the dialled host passes; another name does not", async () => {
  await using pair = await H2Pair.start({ altNames: ["hub.example.net", "127.0.0.1"] });
  assert.equal(checkHubIdentity("127.0.0.1", pair.hubCertificate), undefined);
  assert.equal(checkHubIdentity("hub.example.net", pair.hubCertificate), undefined);
  const err = checkHubIdentity("evil.example.org", pair.hubCertificate);
  assert.ok(err instanceof Error);
  assert.match(err.message, /evil\.example\.org/);
  assert.ok(checkHubIdentity("127.0.0.2", pair.hubCertificate) instanceof Error);
});

Deno.test("a member's certificate naming the host (serverAuth for tunnels) cannot pose as the hub", async () => {
  await using pair = await H2Pair.start({ role: "peer", altNames: ["127.0.0.1"] });
  const err = checkHubIdentity("127.0.0.1", pair.hubCertificate);
  assert.ok(err instanceof Error);
  assert.match(err.message, /role client, not a hub/);
});

Deno.test("the facts of a hub certificate are its serial, notAfter and key as the CA wrote them", async () => {
  await using pair = await H2Pair.start();
  const facts = hubCertificateFacts(pair.hubCertificate);
  assert.ok(facts.raw);
  const cert = parseCertificate(
    `-----BEGIN CERTIFICATE-----\n${facts.raw.toBase64()}\n-----END CERTIFICATE-----\n`,
  );
  assert.equal(facts.serial, serialOf(cert));
  assert.match(facts.serial, /^[0-9a-f]+$/);
  assert.equal(facts.notAfter, cert.notAfter.getTime());
  assert.equal(facts.key, publicKeyHex(cert));

  // TLS may hand over a certificate without its DER: no key then, the rest still read.
  const bare = hubCertificateFacts({ ...pair.hubCertificate, raw: Buffer.alloc(0) });
  assert.equal(bare.raw, undefined);
  assert.equal(bare.key, undefined);
  assert.equal(bare.serial, facts.serial);
});
