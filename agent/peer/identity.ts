/**
 * Who is at the other end of a pair connection. Native TLS in Deno lets only
 * the server present a certificate, so each side also sends a hello with its
 * certificate and an ECDSA signature over `proofText` (both peer names, the
 * caller's endpoint and the pair id), and the other side checks it here:
 * issued by the mesh CA, within its validity, a user certificate with the
 * role this side plays (clientAuth for a caller, serverAuth and the peer name
 * for a provider), not on the newest verified CRL, and naming whom we expect.
 * The provider learns the caller's user from this certificate, never from the
 * hub.
 */
import { agentError } from "@ztm/shared/agent_api";
import {
  altNamesOf,
  certificateRole,
  commonNameOf,
  extendedKeyUsagesOf,
  importPrivateKeyPem,
  issuerAmong,
  parseCertificate,
  parseCertificates,
  x509,
} from "@ztm/shared/certs";
import { normalizeSerial } from "@ztm/shared/crl";
import {
  PEER_PROTOCOL_VERSION,
  type PeerHello,
  peerName,
  proofText,
} from "@ztm/shared/peer_protocol";

/** This agent's own identity in one mesh. */
export interface OwnIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
  user: string;
  endpoint: string;
}

/** A peer whose hello checked out. */
export interface CheckedPeer {
  user: string;
  endpoint: string;
  serial: string;
  name: string;
  /** When the peer's certificate expires: a pooled pair ends then. */
  notAfter: Date;
}

const SIGN: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const encoder = new TextEncoder();

function b64(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

function unb64(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * True when `certPem` can serve end-to-end tunnels for `user`: it carries
 * serverAuth and the peer name (certificates issued before protocol 2 do not).
 */
export function servesTunnels(certPem: string, user: string): boolean {
  const cert = parseCertificate(certPem);
  return extendedKeyUsagesOf(cert).includes(x509.ExtendedKeyUsage.serverAuth) &&
    altNamesOf(cert).includes(peerName(user));
}

/** Signs hellos with one identity. */
export class Signer {
  #own: OwnIdentity;
  readonly name: string;
  #key: Promise<CryptoKey>;

  constructor(own: OwnIdentity) {
    this.#own = own;
    this.name = peerName(own.user);
    this.#key = importPrivateKeyPem(own.keyPem);
  }

  /** The identity hellos and the TLS server present now. */
  get own(): OwnIdentity {
    return this.#own;
  }

  /** A renewed certificate of the same key and user (`renew.ts`): new pairs present it. */
  setCertificate(certPem: string): void {
    this.#own = { ...this.#own, certPem };
  }

  /**
   * True when this identity's certificate can serve end-to-end tunnels: it
   * carries serverAuth and the peer name (certificates issued before
   * protocol 2 do not; such an endpoint must get its certificate reissued).
   */
  canServe(): boolean {
    return servesTunnels(this.#own.certPem, this.#own.user);
  }

  /** This side's hello for pair `sid` between `callerName`/`callerEndpoint` and `serverName`/`serverEndpoint`. */
  async hello(
    callerName: string,
    callerEndpoint: string,
    serverName: string,
    serverEndpoint: string,
    sid: string,
  ): Promise<PeerHello> {
    const text = proofText(callerName, callerEndpoint, serverName, serverEndpoint, sid);
    const sig = await crypto.subtle.sign(SIGN, await this.#key, encoder.encode(text));
    return {
      type: "hello",
      version: PEER_PROTOCOL_VERSION,
      endpoint: this.own.endpoint,
      cert: this.own.certPem,
      sig: b64(sig),
    };
  }
}

/** What a hello must prove. */
export interface Expectation {
  caPem: string;
  revoked: Set<string>;
  /** `caller`: the hello's sender called us; `provider`: we called it. */
  role: "caller" | "provider";
  /** The provider's user we asked for (role `provider`). */
  user?: string;
  /** The server's peer name (ours when checking a caller). */
  serverName: string;
  /** The server's endpoint id: ours when checking a caller, the one we asked for when checking a provider. */
  serverEndpoint: string;
  /** The caller's endpoint (ours when checking a provider). */
  callerEndpoint?: string;
  callerName?: string;
  sid: string;
  now?: Date;
}

/** Checks a peer's hello; throws `Forbidden` (`peer_refused`) naming the first failed check. */
export async function checkHello(hello: unknown, want: Expectation): Promise<CheckedPeer> {
  const refuse = (why: string) => agentError("peer_refused", 403, `Peer refused: ${why}`);
  const h = hello as Partial<PeerHello> | null;
  if (typeof h !== "object" || h === null || h.type !== "hello") throw refuse("no hello");
  if (h.version !== PEER_PROTOCOL_VERSION) {
    throw agentError(
      "protocol_mismatch",
      `This agent speaks ztm protocol ${PEER_PROTOCOL_VERSION}; the peer said ${
        String(h.version).slice(0, 20)
      }`,
    );
  }
  if (typeof h.cert !== "string" || typeof h.sig !== "string" || typeof h.endpoint !== "string") {
    throw refuse("malformed hello");
  }
  let cert: x509.X509Certificate;
  try {
    cert = parseCertificate(h.cert);
  } catch {
    throw refuse("certificate does not parse");
  }
  // Any certificate of the mesh's CA bundle (one CA, or two while it is rotated).
  const signedByCa = await issuerAmong(cert, parseCertificates(want.caPem)) !== undefined;
  if (!signedByCa) throw refuse("certificate not issued by the mesh CA");
  const now = want.now ?? new Date();
  if (now < cert.notBefore || now > cert.notAfter) {
    throw refuse("certificate expired or not yet valid");
  }
  if (certificateRole(cert) !== "client") throw refuse("not a user certificate");
  const serial = normalizeSerial(cert.serialNumber);
  if (want.revoked.has(serial)) throw refuse(`certificate ${serial} is revoked`);
  const user = commonNameOf(cert);
  if (!user) throw refuse("certificate has no user");
  const name = peerName(user);
  const usages = extendedKeyUsagesOf(cert);
  let callerName: string, callerEndpoint: string;
  if (want.role === "caller") {
    if (!usages.includes(x509.ExtendedKeyUsage.clientAuth)) throw refuse("no clientAuth role");
    callerName = name;
    callerEndpoint = h.endpoint;
  } else {
    if (user !== want.user) throw refuse(`certificate is user "${user}", not "${want.user}"`);
    if (!usages.includes(x509.ExtendedKeyUsage.serverAuth)) throw refuse("no serverAuth role");
    if (!altNamesOf(cert).includes(want.serverName)) {
      throw refuse("certificate lacks the peer name");
    }
    if (h.endpoint !== want.serverEndpoint) {
      throw refuse(`endpoint ${h.endpoint.slice(0, 80)} answered, not ${want.serverEndpoint}`);
    }
    callerName = want.callerName!;
    callerEndpoint = want.callerEndpoint!;
  }
  const key = await cert.publicKey.export().catch(() => undefined);
  if (!key) throw refuse("certificate key is not ECDSA");
  const text = proofText(
    callerName,
    callerEndpoint,
    want.serverName,
    want.serverEndpoint,
    want.sid,
  );
  let sig: Uint8Array<ArrayBuffer>;
  try {
    sig = unb64(h.sig);
  } catch {
    throw refuse("signature is not base64");
  }
  const ok = await crypto.subtle.verify(SIGN, key, sig, encoder.encode(text)).catch(() => false);
  if (!ok) throw refuse("signature does not verify");
  return { user, endpoint: h.endpoint, serial, name, notAfter: cert.notAfter };
}
