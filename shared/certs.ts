/**
 * Certificates and keys of a mesh: ECDSA P-256 keys, PEM in and out, the CA
 * certificate, role-bound leaf certificates, CSR checks and signed CRLs.
 *
 * Roles: users hold `clientAuth` only, hubs `serverAuth`
 * only, and only the CA certificate has `CA:true`. Hubs and agents check the
 * role they expect with {@link certificateRole}.
 *
 * Built on `@peculiar/x509` over WebCrypto; no home-made crypto.
 *
 * @example
 * ```ts
 * const keys = await generateKeyPair();
 * const pem = await exportPrivateKeyPem(keys.privateKey);
 * ```
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { sharedError } from "./errors.ts";
import {
  certificateSubjectDer,
  der,
  derOid,
  derSerialDateList,
  derSmallInteger,
  derTime,
  derUnsigned,
  TAG,
} from "./der.ts";

/** ECDSA P-256 with SHA-256, for keys and signatures throughout the mesh. */
export const KEY_ALGORITHM: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** What a certificate may be used for. */
export type CertificateRole = "ca" | "client" | "server" | "unknown";

/** Lower-case hex serial of a certificate, never mixed with other strings. */
export type Serial = string & { readonly __brand: "Serial" };

const DAY_MS = 24 * 60 * 60 * 1000;

/** Makes a new extractable P-256 key pair. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"]);
}

/** PKCS#8 PEM of a private key. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY") + "\n";
}

/** Imports a PKCS#8 PEM P-256 private key for signing. Throws `BadRequest` on anything else. */
export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    const blocks = x509.PemConverter.decodeWithHeaders(pem);
    const block = blocks.find((b) => b.type === "PRIVATE KEY");
    if (!block) throw new Error("no PRIVATE KEY block");
    der = block.rawData;
  } catch (err) {
    throw sharedError("bad_private_key", "Private key is not a PKCS#8 PEM", { cause: err });
  }
  try {
    return await crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]);
  } catch (err) {
    throw sharedError("bad_private_key", "Private key is not an ECDSA P-256 key", {
      cause: err,
    });
  }
}

/**
 * The key pair of PKCS#8 PEM `pem` (ECDSA P-256): the private key for signing and its public
 * key for verifying, both extractable. Throws `BadRequest` (`bad_private_key`) as
 * `importPrivateKeyPem` does.
 */
export async function keyPairOfPem(pem: string): Promise<CryptoKeyPair> {
  const privateKey = await importPrivateKeyPem(pem);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  delete jwk.d;
  jwk.key_ops = ["verify"];
  const publicKey = await crypto.subtle.importKey("jwk", jwk, KEY_ALGORITHM, true, ["verify"]);
  return { privateKey, publicKey };
}

/** Parses one PEM certificate. Throws `BadRequest` on garbage. */
export function parseCertificate(pem: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (err) {
    throw sharedError("bad_certificate", "Not a PEM X.509 certificate", { cause: err });
  }
}

/**
 * Every certificate of a PEM text, in order: one, or a bundle of several
 * (`ca.crt` holding the old and the new CA while a CA is rotated). Throws
 * `BadRequest` when it holds none, or when one does not parse.
 */
export function parseCertificates(pem: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) throw sharedError("bad_certificate", "Not a PEM X.509 certificate");
  return blocks.map(parseCertificate);
}

/**
 * The certificate of `cas` that signed `cert` (its subject is `cert`'s issuer
 * and its key verifies `cert`'s signature), or undefined when none did. Checks
 * the signature only: validity and role are the caller's. Never throws.
 */
export async function issuerAmong(
  cert: x509.X509Certificate,
  cas: x509.X509Certificate[],
): Promise<x509.X509Certificate | undefined> {
  for (const ca of cas) {
    if (cert.issuer !== ca.subject) continue;
    const ok = await cert.verify({ publicKey: ca.publicKey, signatureOnly: true })
      .catch(() => false);
    if (ok) return ca;
  }
  return undefined;
}

/** PEM text of a certificate, newline-terminated. */
export function certificatePem(cert: x509.X509Certificate): string {
  return cert.toString("pem") + "\n";
}

/** A random positive 128-bit serial as lower-case hex. */
export function randomSerial(): Serial {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive, and no leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") as Serial;
}

/** The certificate's serial in the form the mesh uses (lower-case hex, no leading zeros). */
export function serialOf(cert: x509.X509Certificate): Serial {
  return cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, "") as Serial;
}

/** SHA-256 fingerprint, lower-case hex. */
export async function fingerprintOf(cert: x509.X509Certificate): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The certificate's public key (SPKI DER) in hex: what a renewal of the certificate keeps. */
export function publicKeyHex(cert: x509.X509Certificate): string {
  return Array.from(new Uint8Array(cert.publicKey.rawData), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The subject common name, or undefined. */
export function commonNameOf(
  cert: x509.X509Certificate | x509.Pkcs10CertificateRequest,
): string | undefined {
  return cert.subjectName.getField("CN")[0];
}

/** Creates the self-signed CA certificate, valid for `years` (default 10). */
export async function createCaCertificate(
  keys: CryptoKeyPair,
  options: { name?: string; years?: number; now?: Date } = {},
): Promise<x509.X509Certificate> {
  const now = options.now ?? new Date();
  return await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${options.name ?? "ztm mesh CA"}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (options.years ?? 10) * 365 * DAY_MS),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

/** What a leaf certificate to be signed by the CA carries. */
export interface LeafRequest {
  commonName: string;
  publicKey: CryptoKey | x509.PublicKey;
  /**
   * `client`: clientAuth only; `server`: serverAuth only (hubs); `peer`: both
   * (users since protocol 2: endpoints are TLS servers to each other).
   */
  role: "client" | "server" | "peer";
  /** Subject alternative names: DNS names and IP addresses. */
  altNames?: string[];
  days?: number;
  /** Lifetime in ms from `now`; overrides `days` (short-lived certificates, tests). */
  lifetimeMs?: number;
  now?: Date;
  serial?: Serial;
}

/** Signs a leaf certificate with the CA key; `CA:false` and the extended key usages of its role. */
export async function issueLeafCertificate(
  ca: { certificate: x509.X509Certificate; privateKey: CryptoKey },
  req: LeafRequest,
): Promise<x509.X509Certificate> {
  const now = req.now ?? new Date();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      req.role === "client"
        ? [x509.ExtendedKeyUsage.clientAuth]
        : req.role === "server"
        ? [x509.ExtendedKeyUsage.serverAuth]
        : [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth],
      false,
    ),
    await x509.AuthorityKeyIdentifierExtension.create(ca.certificate, false),
  ];
  if (req.altNames?.length) {
    extensions.push(subjectAltNames(req.altNames));
  }
  return await x509.X509CertificateGenerator.create({
    serialNumber: req.serial ?? randomSerial(),
    subject: `CN=${req.commonName}`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (req.lifetimeMs ?? (req.days ?? 365) * DAY_MS)),
    signingAlgorithm: SIGNING,
    publicKey: req.publicKey,
    signingKey: ca.privateKey,
    extensions,
  });
}

/** A subjectAltName extension naming DNS hosts and IP addresses. */
export function subjectAltNames(names: string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(
    names.map((n): x509.JsonGeneralName => ({ type: isIpAddress(n) ? "ip" : "dns", value: n })),
    false,
  );
}

/** True for a literal IPv4 or IPv6 address. */
export function isIpAddress(text: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(text) ||
    (text.includes(":") && /^[0-9A-Fa-f:.]+$/.test(text));
}

/**
 * The role a certificate was issued for, from basicConstraints and extended
 * key usage: a user (`client`) carries clientAuth, alone or (since protocol
 * 2, for end-to-end tunnels) with serverAuth; a hub (`server`) carries
 * serverAuth alone. A hub certificate never carries clientAuth, and a user's
 * only name is under `user.ztm.invalid`, which the CA never gives a hub.
 */
export function certificateRole(cert: x509.X509Certificate): CertificateRole {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca) return "ca";
  const usages = extendedKeyUsagesOf(cert);
  const client = x509.ExtendedKeyUsage.clientAuth as string;
  const server = x509.ExtendedKeyUsage.serverAuth as string;
  if (usages.length === 1 && usages[0] === client) return "client";
  if (usages.length === 2 && usages.includes(client) && usages.includes(server)) return "client";
  if (usages.length === 1 && usages[0] === server) return "server";
  return "unknown";
}

/** The extended key usage OIDs of a certificate (empty when it has none). */
export function extendedKeyUsagesOf(cert: x509.X509Certificate): string[] {
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  return Array.from(eku?.usages ?? [], String);
}

/** Subject alternative names of a certificate or CSR, as plain strings. */
export function altNamesOf(cert: x509.X509Certificate | x509.Pkcs10CertificateRequest): string[] {
  const ext = cert.extensions.find((e) => e.type === "2.5.29.17");
  if (!ext) return [];
  return new x509.SubjectAlternativeNameExtension(ext.rawData).names.items.map((n) => n.value);
}

/** A checked certificate signing request. */
export interface CheckedCsr {
  commonName: string;
  publicKey: x509.PublicKey;
  altNames: string[];
}

/**
 * Parses a PEM CSR, verifies its self-signature and that it carries a P-256 key.
 * Throws `BadRequest` (`bad_csr`) saying which check failed.
 */
export async function checkCsr(pem: string): Promise<CheckedCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw sharedError("bad_csr", "Body is not a PEM certificate signing request", {
      cause: err,
    });
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") {
    throw sharedError("bad_csr", "CSR key must be ECDSA P-256");
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw sharedError("bad_csr", "CSR signature does not verify");
  const commonName = commonNameOf(csr);
  if (!commonName) throw sharedError("bad_csr", "CSR has no subject common name");
  return { commonName, publicKey: csr.publicKey, altNames: altNamesOf(csr) };
}

/** One revoked certificate on a CRL. */
export interface CrlEntry {
  serial: Serial;
  revokedAt: Date;
}

/**
 * Signs a CRL listing `entries`, numbered `number`, valid until `nextUpdate`. Returns PEM.
 *
 * The DER is written here (`der.ts`) rather than by `@peculiar/x509`, whose
 * generator builds an asn1js tree of every entry and parses the result back —
 * which asn1js refuses past 10,000 nodes (~1,250 entries). Entries carry a
 * serial and a date only (no per-entry extensions), so each costs ~36 bytes.
 * Throws on a serial that is not hex.
 */
export async function createCrl(
  ca: { certificate: x509.X509Certificate; privateKey: CryptoKey },
  entries: CrlEntry[] | Uint8Array<ArrayBuffer>,
  options: { number: number; thisUpdate?: Date; nextUpdate?: Date },
): Promise<string> {
  const thisUpdate = options.thisUpdate ?? new Date();
  const nextUpdate = options.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * DAY_MS);
  const algorithm = der(TAG.SEQUENCE, derOid(ECDSA_WITH_SHA256));
  // Entries may come encoded already (`encodeCrlEntries`), as the CA keeps them between signings.
  const revoked = entries instanceof Uint8Array ? entries : encodeCrlEntries(entries);
  const aki = await x509.AuthorityKeyIdentifierExtension.create(ca.certificate, false);
  const extensions = der(
    TAG.CONTEXT_0,
    der(
      TAG.SEQUENCE,
      new Uint8Array(aki.rawData),
      der(TAG.SEQUENCE, derOid(CRL_NUMBER), der(TAG.OCTET_STRING, derSmallInteger(options.number))),
    ),
  );
  const tbs = der(
    TAG.SEQUENCE,
    derSmallInteger(1), // v2
    algorithm,
    certificateSubjectDer(new Uint8Array(ca.certificate.rawData)),
    derTime(thisUpdate),
    derTime(nextUpdate),
    ...(revoked.length ? [der(TAG.SEQUENCE, revoked)] : []),
    extensions,
  );
  const raw = new Uint8Array(await crypto.subtle.sign(SIGNING, ca.privateKey, tbs));
  const half = raw.length / 2;
  const signature = der(
    TAG.SEQUENCE,
    derUnsigned(raw.subarray(0, half)),
    derUnsigned(raw.subarray(half)),
  );
  const crl = der(TAG.SEQUENCE, tbs, algorithm, der(TAG.BIT_STRING, Uint8Array.of(0), signature));
  return pemBlock(crl, "X509 CRL");
}

/** A PEM block of `der` with 64-character lines (native base64: 100× faster than pvtsutils at MBs). */
export function pemBlock(der: Uint8Array, label: string): string {
  const body = der.toBase64().replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n");
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** The DER of CRL entries (the content of revokedCertificates), for `createCrl`. */
export function encodeCrlEntries(entries: CrlEntry[]): Uint8Array<ArrayBuffer> {
  return derSerialDateList(entries.map((e) => ({ serial: e.serial, date: e.revokedAt })));
}

/** OID of ecdsa-with-SHA256, the only signature the mesh makes or accepts. */
export const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
/** OID of the cRLNumber extension. */
export const CRL_NUMBER = "2.5.29.20";

export { x509 };
