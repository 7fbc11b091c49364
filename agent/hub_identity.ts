/**
 * Who a hub is: the checks a hub's certificate passes beyond the chain (TLS
 * verifies that against the mesh CA), and the facts a link keeps of it.
 * Whether the hub is revoked is the CRL's question (`link_crl.ts`).
 */
import tls, { type PeerCertificate } from "node:tls";
import { certificateRole, publicKeyHex, x509 } from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";

/**
 * Checks a hub's certificate beyond the chain (which TLS verified against the
 * mesh CA): it names the dialled host, and carries the hub role (serverAuth
 * only) — so a member's user certificate can never pose as the hub.
 */
export function checkHubIdentity(name: string, cert: PeerCertificate): Error | undefined {
  const err = tls.checkServerIdentity(name, cert);
  if (err) return err;
  const role = certificateRole(new x509.X509Certificate(new Uint8Array(cert.raw)));
  if (role !== "server") return new Error(`hub certificate has role ${role}, not a hub`);
  return undefined;
}

/** What a link keeps of the hub certificate it checked at the handshake. */
export interface HubCertificateFacts {
  serial: string;
  /** Epoch ms: the link leaves the hub then. */
  notAfter: number;
  /** The certificate (DER); undefined when TLS did not hand it over. */
  raw: Uint8Array | undefined;
  /** The certificate's key (SPKI DER, hex). */
  key: string | undefined;
}

/** The serial, notAfter, DER and key of a hub certificate checked at the handshake. */
export function hubCertificateFacts(cert: PeerCertificate): HubCertificateFacts {
  const raw = cert.raw?.length ? new Uint8Array(cert.raw) : undefined;
  return {
    serial: normalizeSerial(cert.serialNumber),
    notAfter: Date.parse(cert.valid_to),
    raw,
    key: raw ? publicKeyHex(new x509.X509Certificate(raw as Uint8Array<ArrayBuffer>)) : undefined,
  };
}
