/**
 * The ztm hub: a stateless relay on the internet. `startHub` enrolls with the
 * CA (or uses the cached identity when the CA is down), follows revocations,
 * and serves HTTP/2 over mutual TLS.
 *
 * @example
 * ```ts
 * const hub = await startHub({ caUrl: "http://127.0.0.1:9999", listen: { hostname: "0.0.0.0", port: 8888 },
 *   hosts: ["localhost"], dataDir: "/var/lib/ztm-hub", caTokenFile: "/root/ztm-ca.db.token" });
 * await hub.close();
 * ```
 *
 * @module
 */
import { ensurePrivateDir, readTextIfExists } from "@ztm/shared/files";
import type { HostPort } from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { enroll, identityFiles } from "./enroll.ts";
import { RevocationFollower } from "./revocations.ts";
import { type HubLimits, HubServer } from "./server.ts";

export { DEFAULT_LIMITS, type HubLimits } from "./server.ts";

/** How to run a hub. */
export interface HubConfig {
  /** `http://host:port` of the CA. */
  caUrl: string;
  listen: HostPort;
  /** Where the plain TCP data port listens; undefined: no tunnels (agents are told so). */
  dataListen?: HostPort;
  /** The data port agents are told to dial (a port forward in front); default the bound one. */
  dataAdvertise?: number;
  /** Names and addresses agents dial; they go into the certificate's SANs. */
  hosts: string[];
  dataDir: string;
  /** File holding the CA token, for the hub certificate. */
  caTokenFile: string;
  limits?: Partial<HubLimits>;
  log?: Logger;
}

/** A running hub. */
export interface RunningHub {
  addr: HostPort;
  server: HubServer;
  close(): Promise<void>;
}

/** Enrolls, loads the CRL, and starts serving. */
export async function startHub(config: HubConfig): Promise<RunningHub> {
  const log = config.log ?? new Logger("hub");
  ensurePrivateDir(config.dataDir);
  const token = readTextIfExists(config.caTokenFile)?.trim();
  const identity = await enroll({
    caUrl: config.caUrl,
    dataDir: config.dataDir,
    hosts: config.hosts,
    token,
    log,
  });
  const revocations = new RevocationFollower({
    caUrl: config.caUrl,
    caPem: identity.caPem,
    crlFile: identityFiles(config.dataDir).crl,
    log,
    // Called from start() on, by which time `server` exists.
    onUpdate: (revoked, crlNumber) => server.applyRevocations(revoked, crlNumber),
  });
  const server = new HubServer({
    ...identity,
    revocations,
    log,
    limits: config.limits,
    dataListen: config.dataListen,
    dataAdvertise: config.dataAdvertise,
  });
  await revocations.start();
  const addr = await server.listen(config.listen);
  return {
    addr,
    server,
    async close() {
      await revocations.close();
      await server.close();
    },
  };
}

// `deno run -A jsr:@ztm/hub` runs the component, as `ztm hub` does. Not awaited here: main.ts
// imports this module, which must finish loading first.
if (import.meta.main) import("./main.ts").then((entry) => entry.main(Deno.args));
