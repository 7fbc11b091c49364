/**
 * Signed management requests: how one endpoint's agent asks another to change
 * its services or port mappings through the hub, so that a hub can carry the
 * request but never forge, alter, retarget or replay it.
 *
 * The caller signs, with its certificate's key (ECDSA P-256, SHA-256), the
 * canonical text
 *
 * ```
 * ztm-management-v1
 * {method}
 * {path}            e.g. services/tcp/web, ports/127.0.0.1/tcp/8080, log
 * {sha256(body) hex}
 * {target endpoint id}
 * {caller endpoint id}
 * {nonce}
 * {expires, ms since the epoch}
 * ```
 *
 * and sends its certificate along. The target checks the chain to the mesh
 * CA, validity, the user role, the signed CRL, the target id, the expiry
 * window, the nonce (once only), and the signature — then decides by the
 * signer's user name.
 */
import {
  certificateRole,
  commonNameOf,
  importPrivateKeyPem,
  parseCertificate,
  x509,
} from "./certs.ts";
import { normalizeSerial } from "./crl.ts";
import { BadRequest, Forbidden, hasControlChars, TooManyRequests, Unauthorized } from "./errors.ts";

/** How long a signed request stays valid. */
export const SIGNED_REQUEST_LIFETIME_MS = 30_000;
/** A request claiming to expire further ahead than this is refused (limits replay caches). */
export const MAX_SIGNED_REQUEST_AHEAD_MS = 5 * 60_000;
/** Largest body a signed request may carry. */
export const MAX_SIGNED_BODY_BYTES = 64 * 1024;

const SIGNING: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const encoder = new TextEncoder();

/** A management request as it travels: what to do, to whom, and the signer's proof. */
export interface SignedRequest {
  method: string;
  path: string;
  body: string;
  target: string;
  /** The endpoint the request comes from (what the target's audit log records). */
  from: string;
  nonce: string;
  expires: number;
  /** The signer's certificate, PEM. */
  certificate: string;
  /** ECDSA signature (IEEE P1363, r‖s) of the canonical text, base64. */
  signature: string;
}

/** Who signed a request that verified. */
export interface Signer {
  user: string;
  serial: string;
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function toBase64(bytes: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The exact text that is signed. */
export async function canonicalText(
  r: Omit<SignedRequest, "certificate" | "signature">,
): Promise<string> {
  const digest = hex(await crypto.subtle.digest("SHA-256", encoder.encode(r.body)));
  // Every field but the certificate and signature, in the order the module comment gives:
  // `from` is signed too, or a hub could change the origin the target's audit log records.
  return [
    "ztm-management-v1",
    r.method,
    r.path,
    digest,
    r.target,
    r.from,
    r.nonce,
    String(r.expires),
  ].join("\n");
}

/** Signs a management request for `target` with the caller's key and certificate. */
export async function signRequest(
  req: { method: string; path: string; body: string; target: string; from: string },
  signer: { certificate: string; privateKey: string },
  now: number = Date.now(),
): Promise<SignedRequest> {
  const nonceBytes = crypto.getRandomValues(new Uint8Array(16));
  const unsigned = {
    ...req,
    nonce: hex(nonceBytes.buffer),
    expires: now + SIGNED_REQUEST_LIFETIME_MS,
  };
  const key = await importPrivateKeyPem(signer.privateKey);
  const signature = await crypto.subtle.sign(
    SIGNING,
    key,
    encoder.encode(await canonicalText(unsigned)),
  );
  return { ...unsigned, certificate: signer.certificate, signature: toBase64(signature) };
}

/** Parses a signed request from untrusted JSON; throws `BadRequest` naming the bad field. */
export function parseSignedRequest(value: unknown): SignedRequest {
  if (typeof value !== "object" || value === null) {
    throw new BadRequest("bad_signed_request", "Not an object");
  }
  const v = value as Record<string, unknown>;
  for (
    const f of ["method", "path", "body", "target", "from", "nonce", "certificate", "signature"]
  ) {
    if (typeof v[f] !== "string") {
      throw new BadRequest("bad_signed_request", `Field "${f}" must be a string`);
    }
  }
  // What the target's audit log records from the request must be plain text.
  for (const f of ["method", "path", "target", "from"]) {
    if (hasControlChars(v[f] as string)) {
      throw new BadRequest("bad_signed_request", `Field "${f}" holds control characters`);
    }
  }
  if (typeof v.expires !== "number" || !Number.isSafeInteger(v.expires)) {
    throw new BadRequest("bad_signed_request", `Field "expires" must be a whole number`);
  }
  if (encoder.encode(v.body as string).length > MAX_SIGNED_BODY_BYTES) {
    throw new BadRequest("bad_signed_request", "Body is too large");
  }
  return v as unknown as SignedRequest;
}

/** Where spent nonces are remembered; `add` is false for a nonce seen before. */
export interface NonceStore {
  add(nonce: string, expires: number, now?: number): boolean;
}

/** Remembers nonces in memory until their requests expire, so each is accepted once (per process). */
export class NonceCache implements NonceStore {
  #seen = new Map<string, number>();
  #max: number;

  constructor(max = 100_000) {
    this.#max = max;
  }

  /** Records `nonce`; false if it was seen before. Throws 429 when full of live nonces. */
  add(nonce: string, expires: number, now: number = Date.now()): boolean {
    if (this.#seen.has(nonce)) return false;
    if (this.#seen.size >= this.#max) {
      for (const [n, exp] of this.#seen) if (exp < now) this.#seen.delete(n);
      if (this.#seen.size >= this.#max) {
        throw new TooManyRequests("too_many_requests", "Too many management requests in flight");
      }
    }
    this.#seen.set(nonce, expires);
    return true;
  }
}

/** What the target knows when verifying. */
export interface VerifyContext {
  caPem: string;
  /** Serials on the current verified CRL. */
  revoked: Set<string>;
  /** This endpoint's id: the request must name it. */
  endpointId: string;
  /** Spent nonces; use a durable store where a restart must not reopen replays. */
  nonces: NonceStore;
  now?: number;
}

/**
 * Verifies a signed request and returns its signer. Throws `Unauthorized`
 * (bad signature, untrusted or revoked certificate, expired, replayed) or
 * `Forbidden` (signed for another endpoint). Authorization by user name is the
 * caller's decision.
 */
export async function verifySignedRequest(r: SignedRequest, ctx: VerifyContext): Promise<Signer> {
  const now = ctx.now ?? Date.now();
  let cert: x509.X509Certificate;
  try {
    cert = parseCertificate(r.certificate);
  } catch {
    throw new Unauthorized("untrusted_certificate", "The signer's certificate does not parse");
  }
  const ca = parseCertificate(ctx.caPem);
  const chained = cert.issuer === ca.subject &&
    await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }).catch(() => false);
  if (!chained) {
    throw new Unauthorized(
      "untrusted_certificate",
      "The signer's certificate is not from this mesh's CA",
    );
  }
  if (now < cert.notBefore.getTime() || now > cert.notAfter.getTime()) {
    throw new Unauthorized("untrusted_certificate", "The signer's certificate is not valid now");
  }
  if (certificateRole(cert) !== "client") {
    throw new Unauthorized(
      "untrusted_certificate",
      "The signer's certificate is not a user certificate",
    );
  }
  const serial = normalizeSerial(cert.serialNumber);
  if (ctx.revoked.has(serial)) {
    throw new Unauthorized("revoked_certificate", "The signer's certificate is revoked");
  }
  if (r.target !== ctx.endpointId) {
    throw new Forbidden("wrong_target", "The request was signed for another endpoint");
  }
  if (r.expires < now) throw new Unauthorized("expired_request", "The signed request has expired");
  if (r.expires - now > MAX_SIGNED_REQUEST_AHEAD_MS) {
    throw new Unauthorized("expired_request", "The signed request expires too far ahead");
  }
  let ok = false;
  try {
    const key = await crypto.subtle.importKey(
      "spki",
      cert.publicKey.rawData,
      {
        name: "ECDSA",
        namedCurve: "P-256",
      },
      false,
      ["verify"],
    );
    ok = await crypto.subtle.verify(
      SIGNING,
      key,
      fromBase64(r.signature),
      encoder.encode(await canonicalText(r)),
    );
  } catch {
    ok = false;
  }
  if (!ok) throw new Unauthorized("bad_signature", "The request's signature does not verify");
  // The nonce is spent only by a request whose signature verified, so garbage cannot fill the cache.
  if (!ctx.nonces.add(r.nonce, r.expires, now)) {
    throw new Unauthorized("replayed_request", "The signed request was already used");
  }
  const user = commonNameOf(cert);
  if (!user) {
    throw new Unauthorized("untrusted_certificate", "The signer's certificate names no user");
  }
  return { user, serial };
}
