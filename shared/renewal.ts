/**
 * The proof of a certificate renewal: an agent signs `renewalMessage` with
 * the key of the certificate it renews and sends `{serial, csr, time,
 * signature}` (through a hub, `HUB_ROUTES.renewals`) to the CA, which checks
 * the signature over the same text (`ca/devices.ts`). When to renew and how
 * the request travels are the agent's (`agent/renew.ts`).
 *
 * @module
 */

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
