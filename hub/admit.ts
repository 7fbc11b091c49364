/**
 * Admission: who may hold a session on the hub. TLS has already checked the
 * chain to the mesh CA and the validity period (`requestCert`,
 * `rejectUnauthorized`); here the hub checks the role (a user certificate,
 * clientAuth only — not the CA, not a hub) and the serial against the CRL.
 */
import type { TLSSocket } from "node:tls";
import { certificateRole, commonNameOf, x509 } from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";

/** The identity a session was admitted with. */
export interface Peer {
  user: string;
  serial: string;
  fingerprint: string;
  address: string;
}

/** Why a peer was refused; logged, never sent (the TLS session is just closed). */
export class AdmissionRefused extends Error {}

/** Checks the peer certificate of an authorized TLS socket. Throws `AdmissionRefused`. */
export function admit(socket: TLSSocket, isRevoked: (serial: string) => boolean): Peer {
  const address = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
  if (!socket.authorized) {
    throw new AdmissionRefused(
      `certificate not verified: ${socket.authorizationError ?? "none presented"}`,
    );
  }
  const raw = socket.getPeerCertificate(false)?.raw;
  if (!raw?.length) throw new AdmissionRefused("no certificate presented");
  const cert = new x509.X509Certificate(new Uint8Array(raw));
  const role = certificateRole(cert);
  if (role !== "client") throw new AdmissionRefused(`certificate role is ${role}, not a user`);
  const user = commonNameOf(cert);
  if (!user) throw new AdmissionRefused("certificate has no common name");
  const serial = normalizeSerial(cert.serialNumber);
  if (isRevoked(serial)) throw new AdmissionRefused(`certificate ${serial} is revoked`);
  const fingerprint =
    socket.getPeerCertificate(false).fingerprint256?.replaceAll(":", "").toLowerCase() ?? "";
  return { user, serial, fingerprint, address };
}
