/**
 * The CA's own key and certificate: made on first start, then loaded from the
 * store byte for byte, so the CA certificate never changes across restarts.
 */
import {
  createCaCertificate,
  generateKeyPair,
  KEY_ALGORITHM,
  parseCertificate,
  x509,
} from "@ztm/shared/certs";
import type { Logger } from "@ztm/shared/log";
import type { CaStore } from "./store.ts";

/** The CA certificate, its PEM exactly as stored, and the signing key. */
export interface SigningKey {
  certificate: x509.X509Certificate;
  certificatePem: string;
  privateKey: CryptoKey;
}

/** Loads the CA key from `store`, creating and saving a new CA on first start. */
export async function loadOrCreateSigningKey(store: CaStore, log: Logger): Promise<SigningKey> {
  let saved = store.ca();
  if (!saved) {
    const keys = await generateKeyPair();
    // Every CA used to be "ztm mesh CA": a suffix from its key tells two apart in messages.
    const spki = await crypto.subtle.exportKey("spki", keys.publicKey);
    const tag = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", spki)).slice(0, 3),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const cert = await createCaCertificate(keys, { name: `ztm mesh CA ${tag}` });
    const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    store.saveCa(der, cert.toString("pem") + "\n");
    saved = store.ca()!;
    log.info("ca created", { serial: cert.serialNumber.toLowerCase() });
  }
  const certificate = parseCertificate(saved.certificate);
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    new Uint8Array(saved.privateKey),
    KEY_ALGORITHM,
    false,
    ["sign"],
  );
  return { certificate, certificatePem: saved.certificate, privateKey };
}
