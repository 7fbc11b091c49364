/**
 * The hub renews its own certificate while it runs: once two thirds of its
 * lifetime have passed, it asks the CA (with the CA token, as at enrollment)
 * for a new certificate of the same key and names, saves it (`0600`) and
 * serves it to new connections; sessions open now keep going. A failed
 * renewal is retried with backoff and logged at warn, then at error once less
 * than a tenth of the lifetime is left.
 */
import { keyPairOfPem, parseCertificate, serialOf, subjectAltNames, x509 } from "@ztm/shared/certs";
import { writeSecretFile } from "@ztm/shared/files";
import { renewalDue, renewalRetryWait } from "@ztm/shared/renewal";
import { errText, type Logger } from "@ztm/shared/log";
import { type HubIdentity, identityFiles } from "./enroll.ts";

/** Longest single timer wait (setTimeout's limit is ~24.8 days). */
const MAX_WAIT_MS = 24 * 3_600_000;

/** What `HubRenewal` needs. */
export interface HubRenewalOptions {
  caUrl: string;
  dataDir: string;
  hosts: string[];
  token: string | undefined;
  log: Logger;
  current: HubIdentity;
  /** Puts the new certificate to use. */
  onRenewed: (next: HubIdentity) => void | Promise<void>;
}

/** Renews the hub certificate in the background. `start()`, then `close()`. */
export class HubRenewal {
  #opts: HubRenewalOptions;
  #current: HubIdentity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #failures = 0;
  /** Renewals done since the start. */
  renewals = 0;

  constructor(opts: HubRenewalOptions) {
    this.#opts = opts;
    this.#current = opts.current;
  }

  start(): void {
    this.#schedule();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#closed) return;
    const cert = parseCertificate(this.#current.certPem);
    const notBefore = cert.notBefore.getTime();
    const notAfter = cert.notAfter.getTime();
    let wait = renewalDue(notBefore, notAfter) - Date.now();
    if (this.#failures > 0) {
      wait = renewalRetryWait(this.#failures, notAfter, 1_000);
    }
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, Math.min(wait, MAX_WAIT_MS)));
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    const cert = parseCertificate(this.#current.certPem);
    if (Date.now() < renewalDue(cert.notBefore.getTime(), cert.notAfter.getTime())) {
      this.#schedule(); // a long wait was cut into pieces
      return;
    }
    try {
      const next = await this.#renew();
      if (this.#closed) return;
      this.#current = next;
      this.#failures = 0;
      this.renewals++;
      await this.#opts.onRenewed(next);
      const fresh = parseCertificate(next.certPem);
      this.#opts.log.info("hub certificate renewed", {
        serial: serialOf(fresh),
        previous: serialOf(cert),
      });
    } catch (err) {
      this.#failures++;
      const left = cert.notAfter.getTime() - Date.now();
      const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
      const fields = { err: errText(err), ms: Math.max(0, Math.round(left)) };
      if (left < lifetime / 10) {
        this.#opts.log.error("hub certificate renewal keeps failing; it expires soon", fields);
      } else this.#opts.log.warn("hub certificate renewal failed; retrying", fields);
    }
    this.#schedule();
  }

  async #renew(): Promise<HubIdentity> {
    const { caUrl, token, hosts, dataDir } = this.#opts;
    if (!token) throw new Error("no CA token: pass --ca-token-file with the CA's token");
    const keys = await keyPairOfPem(this.#current.keyPem);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=hub",
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [subjectAltNames(hosts)],
    });
    const res = await fetch(`${caUrl}/api/hub-certificates`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/pkcs10" },
      body: csr.toString("pem"),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await res.text();
    if (!res.ok) throw new Error(`the CA answered ${res.status}: ${body.trim().slice(0, 200)}`);
    parseCertificate(body);
    writeSecretFile(identityFiles(dataDir).cert, body);
    return { ...this.#current, certPem: body };
  }
}
