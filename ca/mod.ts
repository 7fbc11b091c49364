/**
 * The ztm certificate authority: issues and revokes the mesh's certificates
 * and serves its REST API. `startCa` runs it in-process (tests, the
 * all-in-one `start`); `main.ts` runs it from the command line.
 *
 * @example
 * ```ts
 * const ca = await startCa({ listen: { hostname: "127.0.0.1", port: 0 }, database: "/tmp/ca.db" });
 * console.log(ca.url); await ca.close();
 * ```
 *
 * @module
 */
import { isLoopbackHost } from "@ztm/shared/flags";
import type { HostPort } from "@ztm/shared/flags";
import { loadOrCreateToken } from "@ztm/shared/files";
import { serveHttp } from "@ztm/shared/http";
import { Logger } from "@ztm/shared/log";
import { caExpiry } from "@ztm/shared/ca_expiry";
import { fingerprintOf, parseCertificate } from "@ztm/shared/certs";
import { InviteService } from "./invites.ts";
import { Issuer } from "./issue.ts";
import { Revoker } from "./revoke.ts";
import { createCaApp } from "./server.ts";
import { loadOrCreateSigningKey } from "./signing_key.ts";
import { CaStore } from "./store.ts";

/** How to run a CA. */
export interface CaConfig {
  listen: HostPort;
  /** SQLite file; created `0600`. */
  database: string;
  /** Token for the hub-certificate route and non-loopback listening; default `<database>.token`. */
  tokenFile?: string;
  log?: Logger;
  /** Lifetime of the user certificates it issues, ms; default 365 days. */
  certLifetimeMs?: number;
  /** Lifetime of the hub certificates it issues, ms; default 365 days. */
  hubCertLifetimeMs?: number;
}

/** A running CA. */
export interface RunningCa {
  /** `http://host:port` of the API. */
  url: string;
  /** The CA certificate PEM. */
  caCertificatePem: string;
  /** Stops the server and closes the database. */
  close(): Promise<void>;
}

/** Opens the database, makes the CA on first start, and serves the API. */
export async function startCa(config: CaConfig): Promise<RunningCa> {
  const log = config.log ?? new Logger("ca");
  const store = CaStore.open(config.database);
  const tokenFile = config.tokenFile ?? `${config.database}.token`;
  const token = loadOrCreateToken(tokenFile);
  const signingKey = await loadOrCreateSigningKey(store, log);
  const issuer = new Issuer({
    store,
    signingKey,
    log,
    userLifetimeMs: config.certLifetimeMs,
    hubLifetimeMs: config.hubCertLifetimeMs,
  });
  const invites = new InviteService({
    store,
    issuer,
    caCertificatePem: signingKey.certificatePem,
    caFingerprint: await fingerprintOf(parseCertificate(signingKey.certificatePem)),
    log,
  });
  const revoker = new Revoker({ store, signingKey, log });
  // A year ahead, say that the CA's own certificate will expire (see SECURITY.md, rotation).
  // GET /api/status, `ztm cert status`, and every agent's mesh status say it too.
  const caNotAfter = parseCertificate(signingKey.certificatePem).notAfter;
  if (caExpiry(caNotAfter, Date.now()).warning) {
    log.warn("the ca certificate expires within a year: plan its rotation (SECURITY.md)", {
      code: "ca_expiring",
      from: caNotAfter.toISOString(),
    });
  }
  const loopbackOnly = isLoopbackHost(config.listen.hostname);
  if (!loopbackOnly) {
    log.warn(
      "listening beyond loopback: every route but the CA certificate and CRL needs the token",
      {
        file: tokenFile,
      },
    );
  }
  const app = createCaApp({
    store,
    issuer,
    revoker,
    caCertificatePem: signingKey.certificatePem,
    token,
    loopbackOnly,
    invites,
  });
  const server = serveHttp({ listen: config.listen, app, log });
  const host = server.addr.hostname.includes(":")
    ? `[${server.addr.hostname}]`
    : server.addr.hostname;
  return {
    url: `http://${host}:${server.addr.port}`,
    caCertificatePem: signingKey.certificatePem,
    async close() {
      revoker.close();
      await server.shutdown();
      store.close();
    },
  };
}
