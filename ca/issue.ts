/**
 * Issuing certificates: new key + certificate for a user (the key is returned
 * once and forgotten), a user's own CSR, and a hub's server certificate from
 * its CSR. Every issue is committed to the store before it is returned.
 */
import { caError } from "./errors.ts";
import {
  checkCsr,
  type CheckedCsr,
  exportPrivateKeyPem,
  fingerprintOf,
  generateKeyPair,
  isIpAddress,
  issueLeafCertificate,
  serialOf,
  x509,
} from "@ztm/shared/certs";
import { isEndpointName } from "@ztm/shared/endpoint_id";
import { peerName } from "@ztm/shared/peer_protocol";
import type { Logger } from "@ztm/shared/log";
import type { SigningKey } from "./signing_key.ts";
import type { CaStore, CertificateKind, CertificateRecord } from "./store.ts";

const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const RESERVED_NAMES = new Set(["ca"]);
const HOST_PATTERN =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Checks a certificate name: `[A-Za-z0-9._-]{1,64}`, not starting with `.` or
 * `-`, not `ca` in any case. Throws `BadRequest` (`bad_name`).
 */
export function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw caError(
      "bad_name",
      `Bad name "${name.slice(0, 80)}": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -`,
    );
  }
  if (RESERVED_NAMES.has(name.toLowerCase())) {
    throw caError("bad_name", `Name "${name}" is reserved`);
  }
}

/** Checks an endpoint name (a device certificate's). Throws `BadRequest` (`bad_endpoint`). */
export function checkEndpointName(endpoint: string): void {
  if (!isEndpointName(endpoint)) {
    throw caError(
      "bad_endpoint",
      `Bad endpoint name "${
        endpoint.slice(0, 80)
      }": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -, and not an id (ep-…)`,
    );
  }
}

/** Options for an `Issuer`. */
export interface IssuerOptions {
  store: CaStore;
  signingKey: SigningKey;
  log: Logger;
  /** Validity of user certificates, days. */
  userDays?: number;
  /** Lifetime of user certificates, ms; overrides `userDays` (`ztm ca --cert-lifetime`). */
  userLifetimeMs?: number;
  /** Validity of hub certificates, days. */
  hubDays?: number;
  /** Lifetime of hub certificates, ms; overrides `hubDays` (`ztm ca --hub-cert-lifetime`). */
  hubLifetimeMs?: number;
}

/** Issues certificates. Methods may be called concurrently. */
export class Issuer {
  #opts: IssuerOptions;

  constructor(opts: IssuerOptions) {
    this.#opts = opts;
  }

  /**
   * Makes a new key and user certificate for `name`; returns the key PEM (the
   * only copy) and the record. Throws `BadRequest` for a bad name, `Conflict`
   * if `name` has a live certificate.
   */
  async issueUser(name: string): Promise<{ privateKeyPem: string; record: CertificateRecord }> {
    checkName(name);
    this.#refuseTaken(name);
    const keys = await generateKeyPair();
    const record = await this.#sign("user", name, keys.publicKey, []);
    return { privateKeyPem: await exportPrivateKeyPem(keys.privateKey), record };
  }

  /** Signs a user's own CSR, whose CN must be `name`. Throws `BadRequest`/`Conflict`. */
  async signUserCsr(name: string, csrPem: string): Promise<CertificateRecord> {
    checkName(name);
    const csr = await checkCsrOf(name, csrPem);
    this.#refuseTaken(name);
    return await this.#sign("user", name, csr.publicKey, []);
  }

  /**
   * Makes a new key and a certificate for `name`'s endpoint `endpoint` (a device
   * certificate); returns the key PEM (the only copy) and the record. Throws `Conflict` if
   * that endpoint has a live certificate.
   */
  async issueDevice(
    name: string,
    endpoint: string,
  ): Promise<{ privateKeyPem: string; record: CertificateRecord }> {
    checkName(name);
    checkEndpointName(endpoint);
    this.#refuseTaken(name, endpoint);
    const keys = await generateKeyPair();
    const record = await this.#sign("user", name, keys.publicKey, [], { endpoint });
    return { privateKeyPem: await exportPrivateKeyPem(keys.privateKey), record };
  }

  /**
   * Signs a device's own CSR for `name`'s endpoint `endpoint`; the CSR's common name must be
   * `name`. Throws `BadRequest`/`Conflict`.
   */
  async signDeviceCsr(name: string, endpoint: string, csrPem: string): Promise<CertificateRecord> {
    checkName(name);
    checkEndpointName(endpoint);
    const csr = await checkCsrOf(name, csrPem);
    this.#refuseTaken(name, endpoint);
    return await this.#sign("user", name, csr.publicKey, [], { endpoint });
  }

  /**
   * Renews the live user certificate `previous` from a CSR of the same key: the new
   * certificate has the same user and endpoint, and `previous` is marked superseded (not
   * revoked: it has the same key and expires soon). Throws `Forbidden` when the CSR's key or
   * name is not `previous`'s, `Conflict` when `previous` is revoked or renewed already.
   */
  async renewUser(previous: CertificateRecord, csrPem: string): Promise<CertificateRecord> {
    const csr = await checkCsr(csrPem);
    const old = new x509.X509Certificate(previous.certificate);
    if (!equalBytes(new Uint8Array(csr.publicKey.rawData), new Uint8Array(old.publicKey.rawData))) {
      throw caError("key_mismatch", "A renewal keeps the certificate's key");
    }
    if (csr.commonName !== previous.name) {
      throw caError(
        "csr_name_mismatch",
        403,
        `A renewal keeps the user: the CSR names "${csr.commonName.slice(0, 80)}"`,
      );
    }
    return await this.#sign("user", previous.name, csr.publicKey, [], {
      endpoint: previous.endpoint ?? null,
      renews: previous,
    });
  }

  /**
   * Signs a hub's CSR as a server certificate. Its SANs (DNS names and IP
   * addresses) come from the CSR; `localhost` and `127.0.0.1` are always added.
   */
  async signHubCsr(csrPem: string): Promise<CertificateRecord> {
    const csr = await checkCsr(csrPem);
    checkName(csr.commonName);
    const names = new Set(["localhost", "127.0.0.1"]);
    for (const n of csr.altNames) {
      if (!isIpAddress(n) && !HOST_PATTERN.test(n)) {
        throw caError("bad_csr", `CSR names a bad host "${n.slice(0, 80)}"`);
      }
      if (/(^|\.)invalid$/i.test(n)) {
        // Endpoints' names live there (`peerName`): a hub must never be able to claim one.
        throw caError("bad_csr", `CSR names a reserved host "${n.slice(0, 80)}"`);
      }
      names.add(n);
    }
    return await this.#sign("hub", csr.commonName, csr.publicKey, [...names]);
  }

  #refuseTaken(name: string, endpoint = ""): void {
    // An early answer for the common case; the store's unique index decides races.
    if (this.#opts.store.liveUserCertificate(name, endpoint)) {
      throw caError(
        "name_taken",
        endpoint
          ? `Certificate "${name}" for endpoint "${endpoint}" already exists`
          : `Certificate "${name}" already exists`,
      );
    }
  }

  async #sign(
    kind: CertificateKind,
    name: string,
    publicKey: CryptoKey | x509.PublicKey,
    altNames: string[],
    device: { endpoint?: string | null; renews?: CertificateRecord } = {},
  ): Promise<CertificateRecord> {
    const { store, signingKey, log } = this.#opts;
    const cert = await issueLeafCertificate(signingKey, {
      commonName: name,
      publicKey,
      // A user's endpoints are TLS servers to each other (end-to-end tunnels), named `peerName`.
      role: kind === "user" ? "peer" : "server",
      altNames: kind === "user" ? [peerName(name)] : altNames,
      days: kind === "user" ? this.#opts.userDays : this.#opts.hubDays,
      lifetimeMs: kind === "user" ? this.#opts.userLifetimeMs : this.#opts.hubLifetimeMs,
    });
    const record: CertificateRecord = {
      serial: serialOf(cert),
      name,
      role: kind,
      certificate: cert.toString("pem") + "\n",
      fingerprint: await fingerprintOf(cert),
      notBefore: cert.notBefore.toISOString(),
      notAfter: cert.notAfter.toISOString(),
      issuedAt: new Date().toISOString(),
      revokedAt: null,
      revocationReason: null,
      revocationSeq: null,
      endpoint: device.endpoint ?? null,
      supersededAt: null,
      renewedFrom: device.renews?.serial ?? null,
    };
    if (device.renews) store.insertRenewal(device.renews, record);
    else store.insertCertificate(record);
    log.info(
      device.renews
        ? "certificate renewed"
        : kind === "user"
        ? "certificate issued"
        : "hub certificate issued",
      {
        user: name,
        ...(record.endpoint ? { endpoint: record.endpoint } : {}),
        serial: record.serial,
        ...(device.renews ? { previous: device.renews.serial } : {}),
      },
    );
    return record;
  }
}

/** The CSR in `csrPem` (see `checkCsr`), whose common name must be `name`: else 400 `csr_name_mismatch`. */
async function checkCsrOf(name: string, csrPem: string): Promise<CheckedCsr> {
  const csr = await checkCsr(csrPem);
  if (csr.commonName !== name) {
    throw caError("csr_name_mismatch", 400, `CSR common name "${csr.commonName}" is not "${name}"`);
  }
  return csr;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
