/**
 * Device certificates, renewals and their revocation over a real SQLite
 * store: a renewal supersedes (the CRL stays empty), and revoking a device or
 * a serial revokes the renewals of the same key too, so a stolen key cannot
 * fall back on an older certificate.
 */
import assert from "node:assert/strict";
import { generateKeyPair, x509 } from "@ztm/shared/certs";
import { signRenewal } from "@ztm/shared/renewal";
import { renew } from "./devices.ts";
import { openCa } from "./_fixture.ts";

async function csrOf(keys: CryptoKeyPair, user: string): Promise<string> {
  return (await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${user}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  })).toString("pem");
}

for (const endpoint of ["laptop", null]) {
  Deno.test(`revoking a ${endpoint ? "device" : "legacy"} certificate by serial revokes its renewals too`, async () => {
    await using ca = await openCa();
    const keys = await generateKeyPair();
    const first = endpoint
      ? await ca.issuer.signDeviceCsr("alice", endpoint, await csrOf(keys, "alice"))
      : await ca.issuer.signUserCsr("alice", await csrOf(keys, "alice"));
    const other = await ca.issuer.signDeviceCsr(
      "alice",
      "desktop",
      await csrOf(await generateKeyPair(), "alice"),
    );
    const second = await renew(ca, await signRenewal(keys, first.serial, "alice"));
    const third = await renew(ca, await signRenewal(keys, second.serial, "alice"));
    assert.equal(third.endpoint ?? null, endpoint);
    assert.equal(third.renewedFrom, second.serial);
    // Renewals supersede: nothing is revoked, the CRL is empty.
    const before = new x509.X509Crl(await ca.revoker.crlPem());
    assert.equal(before.entries.length, 0);
    assert.deepEqual(
      ca.store.list().filter((r) => r.role === "user").map((
        r,
      ) => [r.serial, r.supersededAt !== null]),
      [[first.serial, true], [other.serial, false], [second.serial, true], [third.serial, false]],
    );
    // The old certificate cannot be renewed again (a replay).
    await assert.rejects(renew(ca, await signRenewal(keys, first.serial, "alice")), {
      code: "not_live",
    });
    // Revoking the newest by serial takes the whole chain of that key, not the other device.
    const revoked = ca.revoker.revokeSerial(third.serial).map((r) => r.serial).sort();
    assert.deepEqual(revoked, [first.serial, second.serial, third.serial].sort());
    const crl = new x509.X509Crl(await ca.revoker.crlPem());
    const listed = crl.entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, "")).sort();
    assert.deepEqual(listed, revoked);
    assert.equal(ca.store.bySerial(other.serial)?.revokedAt, null);
  });
}
