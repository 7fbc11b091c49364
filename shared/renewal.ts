/**
 * The proof of a certificate renewal: an agent signs `renewalMessage` with
 * the key of the certificate it renews and sends `{serial, csr, time,
 * signature}` (through a hub, `HUB_ROUTES.renewals`) to the CA, which checks
 * the signature over the same text (`ca/devices.ts`). When a certificate is
 * due and how long to wait after a failure hold for the agent's and the hub's
 * renewals alike; how the request travels is theirs (`agent/renew.ts`,
 * `hub/renew.ts`).
 *
 * @module
 */
import { x509 } from "./certs.ts";

/**
 * The text a renewal's signature covers: the version tag, the serial being
 * renewed, the signing time and the CSR (trimmed), one per line.
 *
 * @example
 * ```ts
 * const signed = renewalMessage("5f3a", new Date().toISOString(), csrPem);
 * ```
 */
export function renewalMessage(
  serial: string,
  time: string,
  csrPem: string,
): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`ztm-renew-v1\n${serial}\n${time}\n${csrPem.trim()}`);
}

/** A renewal as it travels to the CA: the serial renewed, the new CSR, the signing time, the signature (base64). */
export type RenewalRequest = { serial: string; csr: string; time: string; signature: string };

/**
 * The renewal of certificate `serial` of `user`, whose key pair is `keys`: a CSR for the same
 * key naming `user`, signed now over `renewalMessage` with the certificate's key.
 *
 * @example
 * ```ts
 * const body = await signRenewal(await keyPairOfPem(keyPem), serial, "alice");
 * ```
 */
export async function signRenewal(
  keys: CryptoKeyPair,
  serial: string,
  user: string,
): Promise<RenewalRequest> {
  const csr = (await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${user}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  })).toString("pem");
  const time = new Date().toISOString();
  const signature = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      keys.privateKey,
      renewalMessage(serial, time, csr),
    ),
  );
  return { serial, csr, time, signature: signature.toBase64() };
}

/** When (epoch ms) a certificate valid from `notBefore` to `notAfter` is due for renewal. */
export function renewalDue(notBefore: number, notAfter: number): number {
  return notBefore + ((notAfter - notBefore) * 2) / 3;
}

/**
 * How long to wait (ms) before retrying a renewal after `failures` failures
 * in a row: from `baseMs`, doubling, but never past a tenth of what is left
 * of the certificate (valid until `notAfter`), nor under `baseMs`.
 */
export function renewalRetryWait(failures: number, notAfter: number, baseMs: number): number {
  const left = Math.max(notAfter - Date.now(), baseMs);
  return Math.min(baseMs * 2 ** Math.min(failures - 1, 10), Math.max(left / 10, baseMs));
}
