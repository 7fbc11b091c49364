/**
 * Certificate renewal: once two thirds of its certificate's lifetime have
 * passed, an agent asks for a new certificate of the same key, user and
 * endpoint, through the hub session it holds (`POST /api/renewals`). The
 * request is a CSR plus a signature of the current key over the serial, the
 * time and the CSR, so the CA knows it comes from the holder of that
 * certificate; the hub carries it and makes its session carry the new
 * serial and expiry, so neither the session nor its tunnels drop.
 *
 * The new certificate must chain to the mesh CA and keep the key and user; it
 * is stored (for restarts and signed management requests) and put in the
 * mesh's config in place, which the hub link uses at its next connection. A
 * failed attempt is retried with backoff (from 2 s, doubling, at most a tenth
 * of the time left); with less than a sixth of the lifetime left, the agent
 * says in plain words that renewal keeps failing and when the certificate
 * expires (log at error, `ztm status`, the dashboard).
 */
import {
  commonNameOf,
  issuerAmong,
  keyPairOfPem,
  parseCertificate,
  parseCertificates,
  serialOf,
  x509,
} from "@ztm/shared/certs";
import { isIP } from "node:net";
import tls from "node:tls";
import { parseHostPort } from "@ztm/shared/flags";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { renewalDue, renewalRetryWait, signRenewal } from "@ztm/shared/renewal";
import { errText, type Logger } from "@ztm/shared/log";
import { checkHubIdentity } from "./hub_identity.ts";
import { servesTunnels } from "./peer/identity.ts";
import type { MeshConfig, MeshRuntime, RenewalState } from "./runtime.ts";

/**
 * When `cert` is due: at two thirds of its lifetime, or at once when it was
 * issued before protocol 2 and cannot serve end-to-end tunnels (an upgraded
 * agent gets a certificate that can, with no one carrying files).
 */
function dueAt(cert: x509.X509Certificate, pem: string): number {
  const notBefore = cert.notBefore.getTime();
  return servesTunnels(pem, commonNameOf(cert) ?? "")
    ? renewalDue(notBefore, cert.notAfter.getTime())
    : notBefore;
}

const MAX_WAIT_MS = 24 * 3_600_000;

/** What `Renewal` needs. */
export interface RenewalOptions {
  /** The mesh's config, shared with its hub link: the certificate is replaced in it. */
  config: MeshConfig;
  runtime: MeshRuntime;
  /** Stores a renewed certificate. */
  save: (certificatePem: string) => void;
  log: Logger;
}

/** Renews one mesh's certificate in the background. `start()`, then `close()`. */
export class Renewal {
  #opts: RenewalOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #failures = 0;
  #renewals = 0;
  #lastRenewedAt: string | null = null;
  #lastError: string | null = null;

  constructor(opts: RenewalOptions) {
    this.#opts = opts;
  }

  start(): void {
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** Where renewal stands. */
  state(): RenewalState {
    const cert = parseCertificate(this.#opts.config.certificate);
    const notBefore = cert.notBefore.getTime();
    const notAfter = cert.notAfter.getTime();
    const left = notAfter - Date.now();
    let warning: string | null = null;
    if (this.#lastError && left < (notAfter - notBefore) / 6) {
      warning = left > 0
        ? `This endpoint's certificate expires at ${cert.notAfter.toISOString()} and renewing it ` +
          `keeps failing (${this.#lastError}); after that the hub will refuse it`
        : `This endpoint's certificate expired at ${cert.notAfter.toISOString()}; renewing it ` +
          `failed (${this.#lastError}): ask for a new invite`;
    }
    return {
      renewAt: new Date(renewalDue(notBefore, notAfter)).toISOString(),
      renewals: this.#renewals,
      lastRenewedAt: this.#lastRenewedAt,
      lastError: this.#lastError,
      warning,
    };
  }

  #schedule(): void {
    if (this.#closed) return;
    const cert = parseCertificate(this.#opts.config.certificate);
    const notAfter = cert.notAfter.getTime();
    let wait = dueAt(cert, this.#opts.config.certificate) - Date.now();
    if (this.#failures > 0) {
      wait = renewalRetryWait(this.#failures, notAfter, 2_000);
    }
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, Math.min(wait, MAX_WAIT_MS)));
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    const { config, log } = this.#opts;
    const cert = parseCertificate(config.certificate);
    if (Date.now() < dueAt(cert, config.certificate)) {
      this.#schedule();
      return;
    }
    try {
      const pem = await this.#renew(cert);
      if (this.#closed) return;
      this.#opts.save(pem);
      config.certificate = pem;
      this.#opts.runtime.certificateRenewed?.(pem);
      this.#failures = 0;
      this.#renewals++;
      this.#lastRenewedAt = new Date().toISOString();
      this.#lastError = null;
      const fresh = parseCertificate(pem);
      log.info("certificate renewed", {
        mesh: config.name,
        serial: serialOf(fresh),
        previous: serialOf(cert),
      });
    } catch (err) {
      this.#failures++;
      this.#lastError = errText(err);
      const state = this.state();
      if (state.warning) {
        log.error("certificate renewal keeps failing", { mesh: config.name, err: state.warning });
      } else {log.warn("certificate renewal failed; retrying", {
          mesh: config.name,
          err: errText(err),
        });}
    }
    this.#schedule();
  }

  async #renew(cert: x509.X509Certificate): Promise<string> {
    const { config, runtime } = this.#opts;
    if (!runtime.hubRequest) throw new Error("this mesh cannot reach its hub for a renewal");
    const user = commonNameOf(cert) ?? "";
    const renewal = await signRenewal(await keyPairOfPem(config.privateKey), serialOf(cert), user);
    const answer = await runtime.hubRequest("POST", HUB_PATHS.renewals, JSON.stringify(renewal));
    let body: { certificate?: unknown; error?: { message?: string } } = {};
    try {
      body = JSON.parse(answer.body);
    } catch { /* reported below */ }
    if (answer.status !== 201 || typeof body.certificate !== "string") {
      throw new Error(
        `the hub answered ${answer.status}: ${body.error?.message ?? answer.body.slice(0, 200)}`,
      );
    }
    const next = parseCertificate(body.certificate);
    const signed = await issuerAmong(next, parseCertificates(config.ca)) !== undefined;
    const a = new Uint8Array(next.publicKey.rawData);
    const b = new Uint8Array(cert.publicKey.rawData);
    const sameKey = a.length === b.length && a.every((v, i) => v === b[i]);
    if (!signed || !sameKey || commonNameOf(next) !== user) {
      throw new Error(
        "the renewed certificate is not from the mesh CA, or not for this key and user",
      );
    }
    return body.certificate;
  }
}

/** The one hub session a `HubCertificateWatch` keeps (a `HubLink` and the mesh's CRL). */
export interface WatchedHub {
  hubCertificate(): { serial: string; notAfter: number; raw: Uint8Array } | undefined;
  /** The address the session dialled, null when not connected. */
  address(): string | null;
  revoked(): Set<string>;
  adoptHubRenewal(serial: string, notAfter: number): void;
}

/**
 * Keeps a hub session past the hub certificate it was opened with (one watch per hub
 * of the mesh, `hubs.ts`): when the hub renews its
 * certificate (same key, `hub/renew.ts`), a fresh TLS handshake with the hub (the agent's
 * certificate, the mesh CA, the hub's name checked as at connect) shows the new one; if it
 * has the same key as the certificate this session checked, chains to the CA, is not
 * revoked and lasts longer, the session adopts its serial and expiry. Probes start when
 * half of what is left of the old certificate has passed, then halve their wait (at least
 * 1 s, at most a day).
 */
export class HubCertificateWatch {
  #config: MeshConfig;
  #runtime: WatchedHub;
  #log: Logger;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Hub certificates adopted since the start. */
  adopted = 0;

  constructor(config: MeshConfig, hub: WatchedHub, log: Logger) {
    this.#config = config;
    this.#runtime = hub;
    this.#log = log;
  }

  start(): void {
    this.#schedule(5_000);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => this.#tick(), Math.max(1_000, Math.min(ms, MAX_WAIT_MS)));
  }

  async #tick(): Promise<void> {
    const current = this.#runtime.hubCertificate();
    const hub = this.#runtime.address();
    if (!current || !hub) return this.#schedule(5_000);
    const left = current.notAfter - Date.now();
    // Probes begin once half of what was left at first sight has passed (the hub renews at
    // two thirds of its lifetime).
    const leftAtFirstSight = current.notAfter - this.#firstSeen(current);
    if (left > leftAtFirstSight / 2) return this.#schedule(left - leftAtFirstSight / 2);
    try {
      const fresh = await probeHub(hub, this.#config);
      const next = new x509.X509Certificate(fresh);
      const old = new x509.X509Certificate(current.raw as Uint8Array<ArrayBuffer>);
      const a = new Uint8Array(next.publicKey.rawData);
      const b = new Uint8Array(old.publicKey.rawData);
      const sameKey = a.length === b.length && a.every((v, i) => v === b[i]);
      const serial = serialOf(next);
      const signed = await issuerAmong(next, parseCertificates(this.#config.ca)) !== undefined;
      if (
        sameKey && signed && serial !== current.serial &&
        next.notAfter.getTime() > current.notAfter && !this.#runtime.revoked().has(serial)
      ) {
        this.#runtime.adoptHubRenewal(serial, next.notAfter.getTime());
        this.adopted++;
        this.#log.info("hub certificate renewal adopted", {
          mesh: this.#config.name,
          peer: hub,
          serial,
          previous: current.serial,
        });
        this.#seen = undefined;
        return this.#schedule((next.notAfter.getTime() - Date.now()) / 2);
      }
    } catch (err) {
      this.#log.debug("hub certificate probe failed", {
        mesh: this.#config.name,
        err: errText(err),
      });
    }
    this.#schedule(left / 2);
  }

  #seen: { serial: string; at: number } | undefined;

  /** When this watch first saw the session's current hub certificate (epoch ms). */
  #firstSeen(current: { serial: string }): number {
    if (this.#seen?.serial !== current.serial) {
      this.#seen = { serial: current.serial, at: Date.now() };
    }
    return this.#seen.at;
  }
}

/** The certificate (DER) a fresh TLS handshake with the hub at `address` shows. */
function probeHub(address: string, config: MeshConfig): Promise<Uint8Array<ArrayBuffer>> {
  const { hostname, port } = parseHostPort(address);
  return new Promise((resolve, reject) => {
    let done = false;
    const socket = tls.connect({
      host: hostname,
      port,
      ca: config.ca,
      cert: config.certificate,
      key: config.privateKey,
      minVersion: "TLSv1.2",
      // No ALPN: the hub finishes the handshake (its certificate is all the probe wants) but
      // opens no HTTP/2 session for it.
      servername: isIP(hostname) ? undefined : hostname,
      checkServerIdentity: (name, cert) => checkHubIdentity(name, cert),
    }, () => {
      done = true;
      const raw = socket.getPeerCertificate(false)?.raw;
      socket.destroy();
      if (!raw?.length) reject(new Error("the hub presented no certificate"));
      else resolve(new Uint8Array(raw));
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer from the hub")));
    socket.on("error", (err) => {
      if (!done) reject(err);
    });
  });
}
