/**
 * Certificates made in-process: a throwaway CA and leaf certificates of any
 * role, validity or name, signed by it or by a running mesh CA's own key
 * (read from its database) for certificates the CA's API would never issue.
 */
import { DatabaseSync } from "node:sqlite";
import {
  certificatePem,
  createCaCertificate,
  exportPrivateKeyPem,
  generateKeyPair,
  issueLeafCertificate,
  KEY_ALGORITHM,
  parseCertificate,
  x509,
} from "@ztm/shared/certs";
import { rememberPrivateKey, rememberPrivateKeyDer } from "./secret_scan.ts";

/** A CA's certificate, PEM and signing key. */
export interface TestCa {
  certificate: x509.X509Certificate;
  privateKey: CryptoKey;
  pem: string;
}

/** A new self-signed CA. */
export async function newCa(): Promise<TestCa> {
  const keys = await generateKeyPair();
  const certificate = await createCaCertificate(keys);
  rememberPrivateKey(await exportPrivateKeyPem(keys.privateKey));
  return { certificate, privateKey: keys.privateKey, pem: certificatePem(certificate) };
}

/**
 * The CA certificate and key of a running (or stopped) mesh CA, read from its
 * database read-only; the key is remembered for the log scan.
 */
export async function meshCaOf(ca: { database: string }): Promise<TestCa & { keyPem: string }> {
  const db = new DatabaseSync(ca.database, { readOnly: true });
  let row: { private_key: Uint8Array; certificate: string };
  try {
    row = db.prepare("SELECT private_key, certificate FROM ca WHERE id = 1").get() as typeof row;
  } finally {
    db.close();
  }
  const der = new Uint8Array(row.private_key);
  rememberPrivateKeyDer(der);
  const privateKey = await crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, false, ["sign"]);
  return {
    certificate: parseCertificate(row.certificate),
    privateKey,
    pem: row.certificate,
    keyPem: x509.PemConverter.encode(der.buffer, "PRIVATE KEY") + "\n",
  };
}

/** A leaf certificate and its key (PEM) signed by `ca`; a user (`client`) named root by default. */
export async function newLeaf(
  ca: Pick<TestCa, "certificate" | "privateKey">,
  opts: {
    name?: string;
    role?: "client" | "server" | "peer";
    now?: Date;
    days?: number;
    altNames?: string[];
  } = {},
): Promise<{ certificate: string; privateKey: string }> {
  const keys = await generateKeyPair();
  const cert = await issueLeafCertificate(ca, {
    commonName: opts.name ?? "root",
    publicKey: keys.publicKey,
    role: opts.role ?? "client",
    now: opts.now,
    days: opts.days,
    altNames: opts.altNames,
  });
  const privateKey = await exportPrivateKeyPem(keys.privateKey);
  rememberPrivateKey(privateKey);
  return { certificate: certificatePem(cert), privateKey };
}
