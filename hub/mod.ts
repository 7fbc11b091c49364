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
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { ensurePrivateDir, readTextIfExists } from "@ztm/shared/files";
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { errText, Logger } from "@ztm/shared/log";
import { enroll, identityFiles } from "./enroll.ts";
import type { HubMetrics } from "./metrics.ts";
import { CaRelay, EnrollmentPort } from "./enrollment.ts";
import { HubList } from "./hub_list.ts";
import { HubRenewal } from "./renew.ts";
import { RevocationFollower } from "./revocations.ts";
import { type HubLimits, HubServer, type RevocationView } from "./server.ts";

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
  /** Counters to add to (`--metrics-listen`); its gauges are pointed at the server here. */
  metrics?: HubMetrics;
  /**
   * Where the enrollment port listens (invite holders' certificate requests): an address,
   * `auto` (the control address, port + 2; a port in use is then only a warning), or
   * undefined: off.
   */
  enrollListen?: HostPort | "auto";
  /**
   * Addresses agents dial (`--names` with their ports; port 0: the bound control port). The
   * hub announces them to the CA, which puts them in invites.
   */
  advertise?: HostPort[];
  /** How often the hub asks the CA for the mesh's hub list (`--hub-list-every`). */
  hubListEveryMs?: number;
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
    onUpdate: (revoked, crlNumber) => {
      if (metrics) metrics.revoked(sessionsOf(server, revoked, closedOwners));
      server.applyRevocations(revoked, crlNumber);
      // A revoked hub certificate leaves the CA's hub list.
      hubList.refresh();
    },
  });
  const metrics = config.metrics;
  // Sessions already counted as closed by a revocation (the full CRL follows the feed's early word).
  const closedOwners = new WeakSet<object>();
  // The server asks `isRevoked` once per session it admits: a yes is a refusal at admission.
  const view: RevocationView = metrics
    ? {
      isRevoked: (serial) => {
        const yes = revocations.isRevoked(serial);
        if (yes) metrics.refused("revoked");
        return yes;
      },
      crlPem: () => revocations.crlPem(),
      crlNumber: () => revocations.crlNumber(),
      status: () => revocations.status(),
    }
    : revocations;
  const relay = new CaRelay(config.caUrl, token);
  const server = new HubServer({
    ...identity,
    revocations: view,
    log,
    limits: config.limits,
    dataListen: config.dataListen,
    dataAdvertise: config.dataAdvertise,
    metrics,
    renewals: relay,
  });
  metrics?.watch(() => server.status());
  const hubList = new HubList({
    ask: () => relay.hubs(),
    log,
    everyMs: config.hubListEveryMs,
    onChange: (hubs) => server.setHubList(hubs),
  });
  await revocations.start();
  const addr = await server.listen(config.listen);
  let enrollment: EnrollmentPort | undefined;
  let enrollAddr: HostPort | undefined;
  if (config.enrollListen) {
    const auto = config.enrollListen === "auto";
    const listen = auto
      ? { hostname: config.listen.hostname, port: addr.port ? addr.port + 2 : 0 }
      : config.enrollListen as HostPort;
    enrollment = new EnrollmentPort({ listen, ...identity, relay, log });
    try {
      enrollAddr = enrollment.start();
    } catch (err) {
      if (!auto) {
        await revocations.close();
        await server.close();
        throw err;
      }
      log.warn("enrollment port not opened: invites cannot be used through this hub", {
        addr: formatHostPort(listen),
        err: errText(err),
      });
      enrollment = undefined;
    }
  }
  const announce = async (certPem: string) => {
    const hosts = config.advertise ?? config.hosts.map((hostname) => ({ hostname, port: 0 }));
    const control = hosts.map((h) => formatHostPort({ ...h, port: h.port || addr.port }));
    const enroll = enrollAddr
      ? hosts.map((h) => formatHostPort({ hostname: h.hostname, port: enrollAddr!.port }))
      : [];
    try {
      await relay.announce(serialOf(parseCertificate(certPem)), control, enroll);
      log.info("hub announced to the ca", { addr: [...control, ...enroll].join(",") });
      hubList.refresh();
    } catch (err) {
      log.warn("could not announce this hub to the CA", { err: errText(err) });
    }
  };
  await announce(identity.certPem);
  // The hub's own certificate is renewed before it expires, without a restart.
  const renewal = new HubRenewal({
    caUrl: config.caUrl,
    dataDir: config.dataDir,
    hosts: config.hosts,
    token,
    log,
    current: identity,
    onRenewed: async (next) => {
      for (
        const [what, apply] of [
          ["control port", () => server.setIdentity(next)],
          ["enrollment port", () => enrollment?.setIdentity(next.certPem, next.keyPem)],
        ] as const
      ) {
        try {
          await apply();
        } catch (err) {
          log.error("renewed hub certificate not served", { addr: what, err: errText(err) });
        }
      }
      await announce(next.certPem);
    },
  });
  renewal.start();
  hubList.start();
  return {
    addr,
    server,
    async close() {
      renewal.close();
      await hubList.close();
      await enrollment?.close();
      await revocations.close();
      await server.close();
    },
  };
}

/**
 * How many sessions with a control stream `revoked` is about to close: each
 * session counted once (its owner goes into `counted`).
 */
function sessionsOf(server: HubServer, revoked: Set<string>, counted: WeakSet<object>): number {
  let n = 0;
  for (const control of server.registry.controls()) {
    if (!revoked.has(control.serial) || counted.has(control.owner)) continue;
    counted.add(control.owner);
    n++;
  }
  return n;
}
