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
 *
 * Answers are signed too (answer format v1), so a hub cannot forge a result
 * ("created" for a change that never happened). The target signs, with its
 * own certificate's key, the canonical text
 *
 * ```
 * ztm-management-answer-v1
 * {sha256(canonical text of the request answered) hex}
 * {answering endpoint id}
 * {status}
 * {sha256(body) hex}
 * ```
 *
 * and its `managed` line carries, as `body`, the JSON of a {@link SignedAnswer}
 * — which the hub passes on unchanged as the body of its answer to
 * `POST /api/endpoints/{id}/manage` (with the answer's status). The caller
 * checks the chain to the mesh CA, validity, the user role, its CRL, the
 * endpoint id it sent to, the endpoint's user, the request digest (so an
 * answer to another request, or an old one, does not fit), and the signature.
 *
 * Version history: answer format v1 (this one) came with the hostile-hub
 * review; targets before it answer unsigned, and callers before it show a
 * signed answer's JSON as the body. A caller reports an unsigned
 * success as an error (`unsigned_answer`) and passes an unsigned error answer
 * on as the error it is (the hub's own refusals, such as `endpoint_offline` or
 * `manage_timeout`, are never signed: a hub can always refuse to carry).
 * The request format (`ztm-management-v1`) is unchanged.
 */
import {
  certificateRole,
  commonNameOf,
  importPrivateKeyPem,
  issuerAmong,
  parseCertificate,
  parseCertificates,
  x509,
} from "./certs.ts";
import { normalizeSerial } from "./crl.ts";
import { hasControlChars, sharedError, ZtmError } from "./errors.ts";

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
    throw sharedError("bad_signed_request", "Not an object");
  }
  const v = value as Record<string, unknown>;
  for (
    const f of ["method", "path", "body", "target", "from", "nonce", "certificate", "signature"]
  ) {
    if (typeof v[f] !== "string") {
      throw sharedError("bad_signed_request", `Field "${f}" must be a string`);
    }
  }
  // What the target's audit log records from the request must be plain text.
  for (const f of ["method", "path", "target", "from"]) {
    if (hasControlChars(v[f] as string)) {
      throw sharedError("bad_signed_request", `Field "${f}" holds control characters`);
    }
  }
  if (typeof v.expires !== "number" || !Number.isSafeInteger(v.expires)) {
    throw sharedError("bad_signed_request", `Field "expires" must be a whole number`);
  }
  if (encoder.encode(v.body as string).length > MAX_SIGNED_BODY_BYTES) {
    throw sharedError("bad_signed_request", "Body is too large");
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
        throw sharedError("too_many_requests", "Too many management requests in flight");
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
    throw sharedError("untrusted_certificate", "The signer's certificate does not parse");
  }
  // Any certificate of the mesh's CA bundle (one CA, or two while it is rotated).
  const chained = await issuerAmong(cert, parseCertificates(ctx.caPem)) !== undefined;
  if (!chained) {
    throw sharedError(
      "untrusted_certificate",
      "The signer's certificate is not from this mesh's CA",
    );
  }
  if (now < cert.notBefore.getTime() || now > cert.notAfter.getTime()) {
    throw sharedError("untrusted_certificate", "The signer's certificate is not valid now");
  }
  if (certificateRole(cert) !== "client") {
    throw sharedError(
      "untrusted_certificate",
      "The signer's certificate is not a user certificate",
    );
  }
  const serial = normalizeSerial(cert.serialNumber);
  if (ctx.revoked.has(serial)) {
    throw sharedError("revoked_certificate", "The signer's certificate is revoked");
  }
  if (r.target !== ctx.endpointId) {
    throw sharedError("wrong_target", "The request was signed for another endpoint");
  }
  if (r.expires < now) throw sharedError("expired_request", "The signed request has expired");
  if (r.expires - now > MAX_SIGNED_REQUEST_AHEAD_MS) {
    throw sharedError("expired_request", "The signed request expires too far ahead");
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
  if (!ok) throw sharedError("bad_signature", "The request's signature does not verify");
  // The nonce is spent only by a request whose signature verified, so garbage cannot fill the cache.
  if (!ctx.nonces.add(r.nonce, r.expires, now)) {
    throw sharedError("replayed_request", "The signed request was already used");
  }
  const user = commonNameOf(cert);
  if (!user) {
    throw sharedError("untrusted_certificate", "The signer's certificate names no user");
  }
  return { user, serial };
}

/** First line of a signed answer's canonical text, and its `format` field. */
export const ANSWER_FORMAT = "ztm-management-answer-v1";

/** A management answer as it travels back: the target's status and body, and its proof. */
export interface SignedAnswer {
  format: typeof ANSWER_FORMAT;
  status: number;
  body: string;
  /** The answering endpoint's id. */
  endpoint: string;
  /** The answering endpoint's certificate, PEM. */
  certificate: string;
  /** ECDSA signature (IEEE P1363, r‖s) of the answer's canonical text, base64. */
  signature: string;
}

async function sha256Hex(text: string): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** The exact text a target signs to answer `request`. */
export async function answerText(
  request: Omit<SignedRequest, "certificate" | "signature">,
  answer: { endpoint: string; status: number; body: string },
): Promise<string> {
  return [
    ANSWER_FORMAT,
    await sha256Hex(await canonicalText(request)),
    answer.endpoint,
    String(answer.status),
    await sha256Hex(answer.body),
  ].join("\n");
}

/** Signs the answer to `request` with the answering endpoint's key and certificate. */
export async function signAnswer(
  request: SignedRequest,
  answer: { status: number; body: string },
  signer: { certificate: string; privateKey: string; endpointId: string },
): Promise<SignedAnswer> {
  const key = await importPrivateKeyPem(signer.privateKey);
  const text = await answerText(request, { ...answer, endpoint: signer.endpointId });
  const signature = await crypto.subtle.sign(SIGNING, key, encoder.encode(text));
  return {
    format: ANSWER_FORMAT,
    status: answer.status,
    body: answer.body,
    endpoint: signer.endpointId,
    certificate: signer.certificate,
    signature: toBase64(signature),
  };
}

/** What the caller expects of an answer. */
export interface AnswerContext {
  caPem: string;
  /** Serials on the caller's current verified CRL. */
  revoked: Set<string>;
  /** The endpoint the request was sent to. */
  endpointId: string;
  /** A name for that endpoint in messages (its name, else its id). */
  endpointName?: string;
  /** The user the endpoint belongs to; the answer must be signed by this user's certificate. */
  user?: string;
  now?: number;
}

/** A signed answer that did not verify, or an unsigned success: a 502 naming the endpoint. */
function badAnswer(
  code: "unsigned_answer" | "forged_answer",
  ctx: AnswerContext,
  why: string,
): ZtmError {
  const name = ctx.endpointName ?? ctx.endpointId;
  return sharedError(
    code,
    `The answer from endpoint "${name}" ${why}, so it cannot be trusted: the change may or may not have happened`,
  );
}

function parseAnswer(text: string): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || (v as { format?: unknown }).format !== ANSWER_FORMAT) {
    return undefined;
  }
  return v as Record<string, unknown>;
}

/**
 * Checks the answer the hub brought back (`status`, `text`) for `request`
 * and returns the target's status and body. An unsigned error answer is
 * returned as it is (the hub's own refusals are unsigned); an unsigned
 * success throws `unsigned_answer`, and a signed answer that does not verify
 * — another CA, wrong role or user, revoked, another endpoint, another
 * request, altered — throws `forged_answer` (both 502).
 */
export async function verifyAnswer(
  status: number,
  text: string,
  request: SignedRequest,
  ctx: AnswerContext,
): Promise<{ status: number; body: string }> {
  const a = parseAnswer(text);
  if (!a) {
    if (status >= 400) return { status, body: text };
    throw badAnswer("unsigned_answer", ctx, "is not signed");
  }
  const { status: s, body, endpoint, certificate, signature } = a;
  if (
    typeof s !== "number" || !Number.isInteger(s) || s < 100 || s > 599 ||
    typeof body !== "string" || typeof endpoint !== "string" ||
    typeof certificate !== "string" || typeof signature !== "string"
  ) {
    throw badAnswer("forged_answer", ctx, "is not a well-formed signed answer");
  }
  if (s !== status) {
    throw badAnswer("forged_answer", ctx, `came with status ${status}, signed ${s}`);
  }
  if (endpoint !== ctx.endpointId) {
    throw badAnswer(
      "forged_answer",
      ctx,
      `is signed for another endpoint ("${endpoint.slice(0, 64)}")`,
    );
  }
  let cert: x509.X509Certificate;
  try {
    cert = parseCertificate(certificate);
  } catch {
    throw badAnswer("forged_answer", ctx, "carries a certificate that does not parse");
  }
  const now = ctx.now ?? Date.now();
  const chained = await issuerAmong(cert, parseCertificates(ctx.caPem)) !== undefined;
  if (!chained) throw badAnswer("forged_answer", ctx, "is signed by a certificate from another CA");
  if (now < cert.notBefore.getTime() || now > cert.notAfter.getTime()) {
    throw badAnswer("forged_answer", ctx, "is signed by a certificate that is not valid now");
  }
  if (certificateRole(cert) !== "client") {
    throw badAnswer("forged_answer", ctx, "is not signed by an endpoint's certificate");
  }
  if (ctx.revoked.has(normalizeSerial(cert.serialNumber))) {
    throw badAnswer("forged_answer", ctx, "is signed by a revoked certificate");
  }
  const signer = commonNameOf(cert) ?? "";
  if (ctx.user !== undefined && signer !== ctx.user) {
    throw badAnswer(
      "forged_answer",
      ctx,
      `is signed by user "${signer}", not by "${ctx.user}" whose endpoint it is`,
    );
  }
  let ok = false;
  try {
    const key = await crypto.subtle.importKey(
      "spki",
      cert.publicKey.rawData,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    ok = await crypto.subtle.verify(
      SIGNING,
      key,
      fromBase64(signature),
      encoder.encode(await answerText(request, { endpoint, status: s, body })),
    );
  } catch {
    ok = false;
  }
  if (!ok) {
    throw badAnswer(
      "forged_answer",
      ctx,
      "does not verify (altered, or the answer to another request)",
    );
  }
  return { status: s, body };
}
