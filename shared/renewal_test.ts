import { strictEqual } from "node:assert/strict";
import { generateKeyPair, keyPairOfPem, x509 } from "./certs.ts";
import { renewalDue, renewalMessage, renewalRetryWait, signRenewal } from "./renewal.ts";

Deno.test("a certificate is due for renewal at two thirds of its lifetime", () => {
  strictEqual(renewalDue(1_000, 4_000), 3_000);
});

Deno.test("renewal retries double from the base, capped by a tenth of what is left", () => {
  const inADay = Date.now() + 86_400_000;
  strictEqual(renewalRetryWait(1, inADay, 1_000), 1_000);
  strictEqual(renewalRetryWait(3, inADay, 1_000), 4_000);
  strictEqual(renewalRetryWait(30, inADay, 1_000), 1_024_000);
  // Nearly expired (or expired): the base, never less.
  strictEqual(renewalRetryWait(5, Date.now() - 1, 2_000), 2_000);
});

Deno.test("the renewal's signed text is its version tag, serial, time and trimmed CSR", () => {
  strictEqual(
    new TextDecoder().decode(renewalMessage("5f", "2026-01-01T00:00:00Z", "\nCSR\n")),
    "ztm-renew-v1\n5f\n2026-01-01T00:00:00Z\nCSR",
  );
});

Deno.test("a signed renewal carries a CSR of the same key naming the user, signed by that key over its text", async () => {
  const keys = await generateKeyPair();
  const pem = x509.PemConverter.encode(
    await crypto.subtle.exportKey("pkcs8", keys.privateKey),
    "PRIVATE KEY",
  );
  const r = await signRenewal(await keyPairOfPem(pem), "5f", "alice");
  strictEqual(r.serial, "5f");
  const csr = new x509.Pkcs10CertificateRequest(r.csr);
  strictEqual(csr.subject, "CN=alice");
  strictEqual(await csr.verify(), true);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  strictEqual(new Uint8Array(csr.publicKey.rawData).toHex(), spki.toHex());
  const signed = renewalMessage(r.serial, r.time, r.csr);
  const sig = Uint8Array.fromBase64(r.signature);
  const verify = (data: Uint8Array<ArrayBuffer>) =>
    crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, keys.publicKey, sig, data);
  strictEqual(await verify(signed), true);
  strictEqual(await verify(renewalMessage("60", r.time, r.csr)), false);
});
