/**
 * Admission: who may hold a session on the hub. TLS has already checked the
 * chain to the mesh CA and the validity period (`requestCert`,
 * `rejectUnauthorized`); here the hub checks the role (a user certificate,
 * clientAuth only — not the CA, not a hub) and the serial against the CRL.
 *
 * Role, user and serial are a function of the certificate's bytes alone, so
 * they are remembered per SHA-256 fingerprint (`AdmissionCache`): a handful
 * of users with thousands of endpoints, or every agent reconnecting after a
 * hub restart, then cost one X.509 parse per certificate rather than one per
 * session. The revocation check runs for every session. TLS checks expiry
 * only at the handshake, so a `Peer` carries its certificate's notAfter and
 * the server ends the session when it passes.
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
  /** The certificate's public key (DER SubjectPublicKeyInfo): endpoint ids are derived from it. */
  spki: Uint8Array;
  /** The certificate's notAfter, epoch ms: the session ends then. */
  notAfter: number;
}

/** Why a peer was refused; logged, never sent (the TLS session is just closed). */
export class AdmissionRefused extends Error {
  /** The kind of refusal, a fixed word for metrics: the certificate is unfit, revoked or expired. */
  readonly reason: "certificate" | "revoked" | "expired";

  constructor(message: string, reason: "certificate" | "revoked" | "expired" = "certificate") {
    super(message);
    this.reason = reason;
  }
}

/** What admission reads from a certificate: its user and serial, or why it is no user's. */
type CertificateFacts =
  | { user: string; serial: string; spki: Uint8Array; notAfter: number }
  | { refused: string };

/**
 * Facts of recently seen certificates by fingerprint, at most `max` (the
 * oldest is forgotten first). Single-threaded; no I/O.
 */
export class AdmissionCache {
  #facts = new Map<string, CertificateFacts>();
  #max: number;

  constructor(max = 4096) {
    this.#max = max;
  }

  /** How many certificates it remembers. */
  get size(): number {
    return this.#facts.size;
  }

  /** The facts of the certificate with `fingerprint`, read by `read()` on a miss. */
  facts(fingerprint: string, read: () => CertificateFacts): CertificateFacts {
    let facts = this.#facts.get(fingerprint);
    if (facts) return facts;
    facts = read();
    if (this.#facts.size >= this.#max) this.#facts.delete(this.#facts.keys().next().value!);
    this.#facts.set(fingerprint, facts);
    return facts;
  }
}

function readFacts(raw: Uint8Array<ArrayBuffer>): CertificateFacts {
  const cert = new x509.X509Certificate(raw);
  const role = certificateRole(cert);
  if (role !== "client") return { refused: `certificate role is ${role}, not a user` };
  const user = commonNameOf(cert);
  if (!user) return { refused: "certificate has no common name" };
  return {
    user,
    serial: normalizeSerial(cert.serialNumber),
    spki: new Uint8Array(cert.publicKey.rawData),
    notAfter: cert.notAfter.getTime(),
  };
}

/**
 * Checks the peer certificate of an authorized TLS socket, through `cache`
 * when given. Throws `AdmissionRefused`.
 */
export function admit(
  socket: TLSSocket,
  isRevoked: (serial: string) => boolean,
  cache?: AdmissionCache,
): Peer {
  const address = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
  if (!socket.authorized) {
    throw new AdmissionRefused(
      `certificate not verified: ${socket.authorizationError ?? "none presented"}`,
    );
  }
  const peerCert = socket.getPeerCertificate(false);
  const raw = peerCert?.raw;
  if (!raw?.length) throw new AdmissionRefused("no certificate presented");
  const fingerprint = peerCert.fingerprint256?.replaceAll(":", "").toLowerCase() ?? "";
  const read = () => readFacts(new Uint8Array(raw));
  const facts = cache && fingerprint ? cache.facts(fingerprint, read) : read();
  if ("refused" in facts) throw new AdmissionRefused(facts.refused);
  if (isRevoked(facts.serial)) {
    throw new AdmissionRefused(`certificate ${facts.serial} is revoked`, "revoked");
  }
  if (facts.notAfter <= Date.now()) {
    throw new AdmissionRefused(`certificate ${facts.serial} has expired`, "expired");
  }
  return {
    user: facts.user,
    serial: facts.serial,
    fingerprint,
    address,
    spki: facts.spki,
    notAfter: facts.notAfter,
  };
}
