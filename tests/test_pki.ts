/**
 * Certificates made in-process for unit tests: a throwaway CA and leaf
 * certificates of any role, validity or name (the process-level tests get
 * theirs from a real CA instead).
 */
import {
  certificatePem,
  createCaCertificate,
  exportPrivateKeyPem,
  generateKeyPair,
  issueLeafCertificate,
  type x509,
} from "@ztm/shared/certs";

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
  return { certificate, privateKey: keys.privateKey, pem: certificatePem(certificate) };
}

/** A leaf certificate and its key (PEM) signed by `ca`; a user (`client`) named root by default. */
export async function newLeaf(
  ca: TestCa,
  opts: { name?: string; role?: "client" | "server"; now?: Date; days?: number } = {},
): Promise<{ certificate: string; privateKey: string }> {
  const keys = await generateKeyPair();
  const cert = await issueLeafCertificate(ca, {
    commonName: opts.name ?? "root",
    publicKey: keys.publicKey,
    role: opts.role ?? "client",
    now: opts.now,
    days: opts.days,
  });
  return {
    certificate: certificatePem(cert),
    privateKey: await exportPrivateKeyPem(keys.privateKey),
  };
}
