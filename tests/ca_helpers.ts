/**
 * Helpers for the CA's process-level tests: HTTP calls that always consume the
 * body, the openssl commands the tests run, and read-only looks into a CA's
 * SQLite file.
 *
 * They wrap real tools only (fetch, curl, openssl, `node:sqlite`); nothing here
 * stands in for the CA.
 *
 * @example
 * ```ts
 * const reply = await call(`${ca.url}/api/certificates/nobody`);
 * assertError(reply, 404, "unknown_certificate");
 * ```
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { run } from "./harness.ts";

/** A finished HTTP exchange: the body is already read. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

/** Sends one request and reads the whole body, so no response is left open. */
export async function call(url: string, init?: RequestInit): Promise<Reply> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/**
 * Asserts that `reply` has `status` and the JSON body `{"error":{"code","message"}}`
 * with `code`; returns the message.
 */
export function assertError(reply: Reply, status: number, code: string): string {
  assert.equal(reply.status, status, `expected ${status}, got ${reply.status}: ${reply.text}`);
  assert.match(reply.headers.get("content-type") ?? "", /^application\/json/);
  const body = JSON.parse(reply.text);
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message"]);
  assert.equal(body.error.code, code, reply.text);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
  return body.error.message;
}

/** One row of `GET /api/certificates`. */
export interface CertificateSummary {
  name: string;
  role: string;
  serial: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  revoked: boolean;
  revokedAt: string | null;
}

/** `GET /api/certificates`, asserting 200. */
export async function listCertificates(
  url: string,
  headers: HeadersInit = {},
): Promise<CertificateSummary[]> {
  const reply = await call(`${url}/api/certificates`, { headers });
  assert.equal(reply.status, 200, reply.text);
  return JSON.parse(reply.text);
}

/** Runs `openssl` with `args`; `stdin` is fed when given. Throws on a non-zero exit. */
export async function openssl(
  args: string[],
  opts: { cwd?: string; stdin?: string; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return await run("openssl", args, opts);
}

/** Key types a test CSR can be made with. */
export type CsrKey = "p256" | "p384" | "rsa";

const NEW_KEY: Record<CsrKey, string[]> = {
  p256: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
  p384: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
  rsa: ["-newkey", "rsa:2048"],
};

/**
 * Makes a key and a CSR with `openssl req` in `dir` (files `<file>.key`,
 * `<file>.csr`); `altNames` is an openssl SAN list such as `DNS:a,IP:10.0.0.1`.
 */
export async function makeCsr(
  dir: string,
  file: string,
  opts: { cn: string; key?: CsrKey; altNames?: string },
): Promise<{ csr: string; keyPath: string; csrPath: string }> {
  const keyPath = join(dir, `${file}.key`);
  const csrPath = join(dir, `${file}.csr`);
  await openssl([
    "req",
    "-new",
    ...NEW_KEY[opts.key ?? "p256"],
    "-nodes",
    "-subj",
    `/CN=${opts.cn}`,
    ...(opts.altNames ? ["-addext", `subjectAltName=${opts.altNames}`] : []),
    "-keyout",
    keyPath,
    "-out",
    csrPath,
  ]);
  return { csr: await Deno.readTextFile(csrPath), keyPath, csrPath };
}

/** The public key (PEM) of a certificate, as openssl reads it. */
export async function publicKeyOfCertificate(certificatePem: string): Promise<string> {
  return (await openssl(["x509", "-noout", "-pubkey"], { stdin: certificatePem })).stdout;
}

/** The public key (PEM) of a private key file, as openssl reads it. */
export async function publicKeyOfKeyFile(keyPath: string): Promise<string> {
  return (await openssl(["pkey", "-in", keyPath, "-pubout"])).stdout;
}

/** `openssl x509 -text` of a certificate. */
export async function certificateText(certificatePem: string): Promise<string> {
  return (await openssl(["x509", "-noout", "-text"], { stdin: certificatePem })).stdout;
}

/** The certificate's serial as openssl prints it (upper-case hex). */
export async function serialOfCertificate(certificatePem: string): Promise<string> {
  const out = (await openssl(["x509", "-noout", "-serial"], { stdin: certificatePem })).stdout;
  return out.trim().replace(/^serial=/, "");
}

/** Runs `openssl verify -CAfile` for `certificatePem` against `caPem`; true when it verifies. */
export async function verifiesAgainst(
  dir: string,
  caPem: string,
  certificatePem: string,
): Promise<boolean> {
  const name = crypto.randomUUID();
  const caPath = join(dir, `${name}-ca.crt`);
  const certPath = join(dir, `${name}.crt`);
  await Deno.writeTextFile(caPath, caPem);
  await Deno.writeTextFile(certPath, certificatePem);
  const out = await openssl(["verify", "-CAfile", caPath, certPath], { allowFail: true });
  return out.code === 0 && out.stdout.includes(": OK");
}

/** The extended key usages openssl shows, e.g. `["TLS Web Client Authentication"]`. */
export function extendedKeyUsages(text: string): string[] {
  const m = /X509v3 Extended Key Usage:[^\n]*\n\s*([^\n]*)/.exec(text);
  return m ? m[1].split(",").map((s) => s.trim()) : [];
}

/** Decodes the first PEM block of `pem` to DER bytes. */
export function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const body = pem.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

/** Encodes DER bytes as a PEM block of `label`. */
export function derToPem(der: Uint8Array, label: string): string {
  const b64 = btoa(String.fromCharCode(...der));
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Index of `needle` in `hay`, or -1. */
export function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  if (needle.length === 0) return 0;
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * Byte strings that would betray `privateKeyPem` if found in a file: its
 * base64 body, each of its base64 lines, its PKCS#8 DER and its private scalar.
 */
export async function keyFingerprints(privateKeyPem: string): Promise<Uint8Array[]> {
  const enc = new TextEncoder();
  const lines = privateKeyPem.split("\n").filter((l) => l && !l.startsWith("-----"));
  const der = pemToDer(privateKeyPem);
  const key = await crypto.subtle.importKey(
    "pkcs8",
    der,
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const d = Uint8Array.from(
    atob(jwk.d!.replace(/-/g, "+").replace(/_/g, "/")),
    (c) => c.charCodeAt(0),
  );
  return [enc.encode(lines.join("")), ...lines.map((l) => enc.encode(l)), der, d];
}

/** The database file and its WAL companions that exist now. */
export async function databaseFiles(database: string): Promise<string[]> {
  const out: string[] = [];
  for (const path of [database, `${database}-wal`, `${database}-shm`]) {
    try {
      await Deno.stat(path);
      out.push(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return out;
}

/** Opens the CA database read-only, runs `fn`, and closes it. */
export function withDatabase<T>(database: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(database, { readOnly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** One certificate row as the database holds it. */
export interface CertificateRow {
  serial: string;
  name: string;
  role: string;
  revoked: boolean;
}

/**
 * Checks a stopped CA's database: `PRAGMA integrity_check` is `ok` and the
 * schema's invariants hold; returns its certificate rows.
 */
export function inspectDatabase(database: string): CertificateRow[] {
  return withDatabase(database, (db) => {
    const check = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    assert.deepEqual(check.map((r) => r.integrity_check), ["ok"]);
    const rows = db.prepare(
      "SELECT serial, name, name_key, role, certificate, revoked_at, revocation_seq FROM certificates",
    ).all() as Record<string, string | number | null>[];
    for (const r of rows) {
      assert.equal(r.name_key, String(r.name).toLowerCase());
      assert.match(String(r.certificate), /^-----BEGIN CERTIFICATE-----/);
      assert.equal(r.revoked_at === null, r.revocation_seq === null);
    }
    return rows.map((r) => ({
      serial: String(r.serial),
      name: String(r.name),
      role: String(r.role),
      revoked: r.revoked_at !== null,
    }));
  });
}

/**
 * Waits for `promise`, failing when `ms` pass first; clears its timer so no
 * test leaks one.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A new invite for `user` from the CA at `caUrl` (`POST /api/invites`, on loopback: no token). */
export async function inviteFor(
  caUrl: string,
  user: string,
  opts: { uses?: number } = {},
): Promise<string> {
  const res = await fetch(`${caUrl}/api/invites`, {
    method: "POST",
    body: JSON.stringify({ user, ...opts }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, JSON.stringify(body));
  return body.invite;
}
