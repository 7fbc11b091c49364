/**
 * The hub's identity: the mesh CA certificate, the hub's own key (made here,
 * never sent anywhere) and its server certificate, signed by the CA from a
 * CSR whose SANs are the hub's `--names`.
 *
 * Everything is cached in the data dir (`0600`), so a hub restarts while the
 * CA is down; with no cache and no CA it retries until the CA answers.
 */
import { join } from "node:path";
import {
  altNamesOf,
  certificateRole,
  exportPrivateKeyPem,
  generateKeyPair,
  keyPairOfPem,
  parseCertificate,
  subjectAltNames,
  x509,
} from "@ztm/shared/certs";
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import { errText, type Logger } from "@ztm/shared/log";

/** A certificate this close to expiry is renewed at start. */
const RENEW_BEFORE_MS = 30 * 24 * 60 * 60 * 1000;

/** The hub's TLS material, PEM. */
export interface HubIdentity {
  caPem: string;
  keyPem: string;
  certPem: string;
}

/** Where and how to enroll. */
export interface EnrollOptions {
  /** `http://host:port` of the CA. */
  caUrl: string;
  dataDir: string;
  /** Host names and addresses to put in the certificate's SANs. */
  hosts: string[];
  /** The CA token (for `POST /api/hub-certificates`); undefined if unreadable. */
  token: string | undefined;
  log: Logger;
  signal?: AbortSignal;
}

/** Paths of the cached files inside `dataDir`. */
export function identityFiles(dataDir: string) {
  return {
    ca: join(dataDir, "ca.crt"),
    key: join(dataDir, "hub.key"),
    cert: join(dataDir, "hub.crt"),
    crl: join(dataDir, "crl.pem"),
  };
}

async function fetchText(url: string, init: RequestInit = {}): Promise<string> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(10_000) });
  const body = await res.text();
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${body.trim().slice(0, 200)}`);
  return body;
}

/**
 * Loads or obtains the hub's identity. Retries with backoff while the CA is
 * unreachable and nothing usable is cached; throws on a refusal the CA will
 * repeat (such as a wrong token) or when `signal` aborts.
 */
export async function enroll(opts: EnrollOptions): Promise<HubIdentity> {
  const files = identityFiles(opts.dataDir);
  let delay = 500;
  while (true) {
    try {
      return await enrollOnce(opts, files);
    } catch (err) {
      if (err instanceof Refused || opts.signal?.aborted) throw err;
      opts.log.warn("ca unreachable, retrying", { err: errText(err), ms: delay });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
}

/** A refusal from the CA that retrying will not fix. */
export class Refused extends Error {}

async function enrollOnce(
  opts: EnrollOptions,
  files: ReturnType<typeof identityFiles>,
): Promise<HubIdentity> {
  const { log } = opts;
  const cachedCa = readTextIfExists(files.ca);
  let caPem: string;
  try {
    caPem = await fetchText(`${opts.caUrl}/api/certificates/ca`, { signal: opts.signal });
    if (certificateRole(parseCertificate(caPem)) !== "ca") {
      throw new Refused("The CA's certificate is not a CA certificate");
    }
    if (cachedCa !== caPem) {
      if (cachedCa) log.warn("mesh ca changed; replacing the hub certificate", { file: files.ca });
      writeSecretFile(files.ca, caPem);
    }
  } catch (err) {
    if (err instanceof Refused || !cachedCa) throw err;
    log.warn("ca unreachable, using the cached ca certificate", { err: errText(err) });
    caPem = cachedCa;
  }
  const ca = parseCertificate(caPem);

  let keyPem = readTextIfExists(files.key);
  let keys: CryptoKeyPair;
  if (keyPem) {
    keys = await keyPairOfPem(keyPem);
  } else {
    keys = await generateKeyPair();
    keyPem = await exportPrivateKeyPem(keys.privateKey);
    writeSecretFile(files.key, keyPem);
    log.info("hub key created", { file: files.key });
  }

  const certPem = readTextIfExists(files.cert);
  if (certPem && await usable(certPem, ca, keys.publicKey, opts.hosts)) {
    return { caPem, keyPem, certPem };
  }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=hub",
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [subjectAltNames(opts.hosts)],
  });
  if (!opts.token) throw new Refused("No CA token: pass --ca-token-file with the CA's token");
  const res = await fetch(`${opts.caUrl}/api/hub-certificates`, {
    method: "POST",
    headers: { authorization: `Bearer ${opts.token}`, "content-type": "application/pkcs10" },
    body: csr.toString("pem"),
    signal: opts.signal ?? AbortSignal.timeout(10_000),
  });
  const body = await res.text();
  if (res.status >= 400 && res.status < 500) {
    throw new Refused(
      `The CA refused the hub certificate (${res.status}): ${body.trim().slice(0, 200)}`,
    );
  }
  if (!res.ok) throw new Error(`The CA answered ${res.status}`);
  writeSecretFile(files.cert, body);
  log.info("hub certificate issued", { serial: parseCertificate(body).serialNumber.toLowerCase() });
  return { caPem, keyPem, certPem: body };
}

async function usable(
  pem: string,
  ca: x509.X509Certificate,
  publicKey: CryptoKey,
  hosts: string[],
): Promise<boolean> {
  try {
    const cert = parseCertificate(pem);
    if (!(await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }))) return false;
    if (cert.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) return false;
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
    if (!equalBytes(new Uint8Array(cert.publicKey.rawData), spki)) return false;
    const names = new Set(altNamesOf(cert));
    return hosts.every((h) => names.has(h));
  } catch {
    return false;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
