/**
 * The invite string and the enrollment proof, shared by the CA (which makes
 * and checks them) and the agent (which reads an invite and proves it).
 *
 * An invite is `ztm-invite-1.` and base64url of a small JSON object:
 * `{u: user, i: id, s: secret (base64url, 32 bytes), f: CA certificate
 * SHA-256 fingerprint (hex), h: [hub control host:port], e: [hub enrollment
 * host:port]}`. The proof of an enrollment is HMAC-SHA256 over the invite id,
 * the endpoint name and the CSR, keyed by a key derived from the secret, so it
 * binds the request to one key pair and can be checked by the CA only.
 */
import { BadRequest, sharedError } from "./errors.ts";

/** What an invite carries. */
export interface InvitePayload {
  user: string;
  /** The invite's public handle (16 hex digits). */
  id: string;
  /** 32 random bytes. */
  secret: Uint8Array;
  /** SHA-256 fingerprint of the CA certificate, lower-case hex. */
  caFingerprint: string;
  /** Hub control addresses (`host:port`), what the joined agent dials. */
  hubs: string[];
  /** Hub enrollment addresses (`host:port`), where the CSR goes. */
  enroll: string[];
}

const PREFIX = "ztm-invite-1.";
/** Longest invite string accepted. */
export const MAX_INVITE_CHARS = 4096;

/** The printable string of an invite. */
export function encodeInvite(p: InvitePayload): string {
  const body = JSON.stringify({
    u: p.user,
    i: p.id,
    s: p.secret.toBase64({ alphabet: "base64url", omitPadding: true }),
    f: p.caFingerprint,
    h: p.hubs,
    e: p.enroll,
  });
  return PREFIX + new TextEncoder().encode(body).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

function bad(why: string): BadRequest {
  return sharedError("bad_invite", `This is not a ztm invite: ${why}`);
}

/** Reads an invite string (whitespace around and inside it ignored). Throws `BadRequest`. */
export function decodeInvite(text: string): InvitePayload {
  const compact = text.replace(/\s+/g, "");
  if (compact.length > MAX_INVITE_CHARS) throw bad("it is too long");
  if (!compact.startsWith(PREFIX)) throw bad(`it does not start with ${PREFIX}`);
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(
      new TextDecoder().decode(
        Uint8Array.fromBase64(compact.slice(PREFIX.length), { alphabet: "base64url" }),
      ),
    );
  } catch {
    throw bad("it is cut or altered");
  }
  const list = (v: unknown) =>
    Array.isArray(v) && v.length > 0 && v.length <= 16 &&
    v.every((a) => typeof a === "string" && /^[A-Za-z0-9.\-:\[\]]{1,260}:\d{1,5}$/.test(a));
  if (
    !o || typeof o !== "object" || typeof o.u !== "string" || typeof o.i !== "string" ||
    !/^[0-9a-f]{16}$/.test(o.i) || typeof o.s !== "string" || typeof o.f !== "string" ||
    !/^[0-9a-f]{64}$/.test(o.f) || !list(o.h) || !list(o.e)
  ) {
    throw bad("a field is missing or malformed");
  }
  let secret: Uint8Array;
  try {
    secret = Uint8Array.fromBase64(o.s, { alphabet: "base64url" });
  } catch {
    throw bad("its secret is malformed");
  }
  if (secret.length !== 32) throw bad("its secret is malformed");
  return {
    user: o.u,
    id: o.i,
    secret,
    caFingerprint: o.f,
    hubs: o.h as string[],
    enroll: o.e as string[],
  };
}

/** The HMAC key the CA keeps for an invite (and the device derives from the secret). */
export async function inviteProofKey(secret: Uint8Array): Promise<Uint8Array> {
  const label = new TextEncoder().encode("ztm-invite-key-v1\n");
  const data = new Uint8Array(label.length + secret.length);
  data.set(label);
  data.set(secret, label.length);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

/** HMAC-SHA256 of the enrollment `(id, endpoint, csr)` under `key`. */
export async function enrollmentProof(
  key: Uint8Array,
  id: string,
  endpoint: string,
  csrPem: string,
): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const msg = new TextEncoder().encode(`ztm-enroll-v1\n${id}\n${endpoint}\n${csrPem.trim()}`);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, msg));
}
