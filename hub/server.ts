/**
 * The hub: an HTTP/2 server over mutual TLS that admits mesh members, keeps
 * one control stream per endpoint, answers registry queries and pairs tunnel
 * streams (see the message flow in `shared/protocol.ts`).
 *
 * Routes are the wire contract's `HUB_ROUTES`, each given its handler here;
 * an endpoint's control stream is served by `control.ts`. Control (admission,
 * registry, pairing) decides; the data port (`relay/data_port.ts`) splices
 * bytes it cannot read. Sessions of a revoked certificate are destroyed the
 * moment the CRL lists them, with every tunnel they carry.
 */
import http2, {
  type Http2SecureServer,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { TLSSocket } from "node:tls";
import { ZtmError } from "@ztm/shared/errors";
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { findRoute, type Params, parsePageParams } from "@ztm/shared/http";
import { errText, type Logger } from "@ztm/shared/log";
import {
  HUB_ROUTES,
  type HubListEntry,
  type HubRoute,
  OPEN_TIMEOUT_MS,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  WINDOW_BYTES,
} from "@ztm/shared/protocol";
import { VERSION } from "@ztm/shared/version";
import { AdmissionCache, admit, type Peer } from "./admit.ts";
import { hubError } from "./errors.ts";
import { Registry } from "./registry.ts";
import { pingDueSessions } from "./session_ping.ts";
import { type ControlContext, serveControl, type SessionState } from "./control.ts";
import { DataPort } from "./relay/data_port.ts";
import { ManagementRelay } from "./management.ts";
import { Tickets } from "./tickets.ts";
import { Tunnels } from "./tunnels.ts";
import { respondError, respondJson } from "./respond.ts";
import { ConnectionGate } from "./connection_gate.ts";
import { LogThrottle } from "./log_throttle.ts";
import type { HubMetrics } from "./metrics.ts";
import { type CaRelay, handleRenewal } from "./enrollment.ts";

/**
 * How long a connection may take to finish its TLS handshake. `node:tls`
 * waits 120 s by default, so idle sockets that never send a ClientHello
 * would hold descriptors that long (tests/faults/fault_idle_handshake_test.ts).
 */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Connections the kernel may queue before the hub accepts them (capped by
 * `net.core.somaxconn`). Node's default of 511 overflows when thousands of
 * agents redial a restarted hub at once, and a dropped SYN costs its agent a
 * retransmission 1, 3, 7… s later.
 */
const LISTEN_BACKLOG = 8192;

/** How long a session refused at admission (hub full, user over its cap) is kept to say why. */
const REFUSED_SESSION_MS = 5_000;

/** Limits that answer 429/413 instead of letting the hub fall over. */
export interface HubLimits {
  maxSessions: number;
  maxStreamsPerSession: number;
  /** Sessions one user (certificate subject) may hold at once. */
  maxSessionsPerUser: number;
  /** Endpoints one user may have listed, online or offline until purged. */
  maxEndpointsPerUser: number;
  /** Services one endpoint may publish. */
  maxServicesPerEndpoint: number;
  /** Bytes (as JSON) of all the services one endpoint publishes, with their user lists. */
  maxServiceBytesPerEndpoint: number;
  /** Control streams open at once on one session (one endpoint each session). */
  maxControlStreamsPerSession: number;
  /** Control-port connections one address may hold before admission. */
  maxPendingPerAddress: number;
  /** How long an offline endpoint stays listed. */
  purgeAfterMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** How long a tunnel may take to be accepted and attached; also a ticket's lifetime. */
  openTimeoutMs: number;
}

/** Defaults for `HubLimits`. */
export const DEFAULT_LIMITS: HubLimits = {
  maxSessions: 20_000,
  maxStreamsPerSession: 1_000,
  // Per user: the scale bench's default (10,000 endpoints of 16 users) stays below these; one
  // hostile member then holds at most 1,000 sessions (~54 KiB each) and 1,000 endpoints of
  // 32 KiB of services each (bench/hostile_member.ts measures the ceiling).
  maxSessionsPerUser: 1_000,
  maxEndpointsPerUser: 1_000,
  maxServicesPerEndpoint: 100,
  maxServiceBytesPerEndpoint: 32 * 1024,
  maxControlStreamsPerSession: 2,
  maxPendingPerAddress: 128,
  purgeAfterMs: 5 * 60_000,
  pingIntervalMs: PING_INTERVAL_MS,
  pingTimeoutMs: PING_TIMEOUT_MS,
  openTimeoutMs: OPEN_TIMEOUT_MS,
};

/** The revocation state the server consults. */
export interface RevocationView {
  isRevoked(serial: string): boolean;
  crlPem(): string | undefined;
  /** The number of the CRL `crlPem()` returns, 0 when none. */
  crlNumber(): number;
  status(): unknown;
}

/** What a `HubServer` needs. */
export interface HubServerOptions {
  caPem: string;
  keyPem: string;
  certPem: string;
  revocations: RevocationView;
  /** Counters to add to (`--metrics-listen`). */
  metrics?: HubMetrics;
  log: Logger;
  /** Where the plain TCP data port listens; none: no tunnels (status says so). */
  dataListen?: HostPort;
  /** The data port agents are told to dial, when a port forward changes it. */
  dataAdvertise?: number;
  limits?: Partial<HubLimits>;
  /** Carries members' certificate renewals to the CA (`enrollment.ts`); none: refused. */
  renewals?: CaRelay;
}

type StreamHandler = (
  stream: ServerHttp2Stream,
  params: Params,
  state: SessionState,
  url: URL,
  headers: IncomingHttpHeaders,
) => void | Promise<void>;

/** What `GET /api/status` answers. */
export interface HubStatus {
  version: string;
  protocol: number;
  uptimeSeconds: number;
  sessions: number;
  tunnels: number;
  dataPort: number | null;
  /** Connections the data port accepted since the start. */
  dataConnections: number;
  /** Data connections refused since the start (no valid ticket, over a limit). */
  dataRefused: number;
  endpoints: number;
  online: number;
  /** Control-port connections held now, and refused by the per-address or descriptor cap since the start. */
  controlConnections: { held: number; refused: number };
  revocations: unknown;
}

/** The hub server. Create, `listen()`, then `close()`. */
export class HubServer {
  #opts: HubServerOptions;
  #limits: HubLimits;
  #log: Logger;
  #server: Http2SecureServer;
  #sockets = new Set<TLSSocket>();
  #sessions = new Map<ServerHttp2Session, SessionState>();
  #admissions = new AdmissionCache();
  #userSessions = new Map<string, number>();
  #quiet: LogThrottle;
  #gate: ConnectionGate;
  #pingSweep: ReturnType<typeof setInterval> | undefined;
  #management: ManagementRelay;
  #tickets: Tickets;
  #tunnels: Tunnels;
  #dataPort: DataPort | undefined;
  #dataAddr: HostPort | undefined;
  #started = Date.now();
  /** The mesh's hub list as the CA last gave it (`setHubList`). */
  #hubList: HubListEntry[] = [];
  readonly registry: Registry;
  #routes: { method: string; pattern: string; handler: StreamHandler }[];
  #controlContext: ControlContext;

  constructor(opts: HubServerOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.registry = new Registry({
      purgeAfterMs: this.#limits.purgeAfterMs,
      maxEndpointsPerUser: this.#limits.maxEndpointsPerUser,
    });
    this.#quiet = new LogThrottle(this.#log);
    this.#gate = new ConnectionGate({
      perAddress: this.#limits.maxPendingPerAddress,
      quiet: this.#quiet,
      onRefused: (reason) => opts.metrics?.refused(reason),
    });
    this.#management = new ManagementRelay(this.registry);
    this.#tickets = new Tickets(this.#limits.openTimeoutMs);
    this.#tunnels = new Tunnels({
      registry: this.registry,
      tickets: this.#tickets,
      log: this.#log,
      openTimeoutMs: this.#limits.openTimeoutMs,
      onOutcome: (err) => err ? opts.metrics?.tunnelFailed(err) : opts.metrics?.tunnelOpened("ok"),
    });
    if (opts.dataListen) {
      this.#dataPort = new DataPort({
        listen: opts.dataListen,
        tickets: this.#tickets,
        log: this.#log,
        onRelayed: (bytes) => opts.metrics?.relayed(bytes),
      });
    }
    // Every route of the wire contract (`HUB_ROUTES`), each with its handler here.
    const handlers: Record<HubRoute, StreamHandler> = {
      control: (s, p, st) => this.#control(s, p, st),
      tunnel: (s, p, st) => this.#openTunnel(s, p, st),
      manage: (s, p, st) => this.#manage(s, p, st),
      endpoints: (s, _p, _st, url) =>
        respondJson(s, 200, this.registry.page(parsePageParams(url.searchParams))),
      endpoint: (s, p) => respondJson(s, 200, this.registry.get(p.id)),
      services: (s, _p, _st, url) =>
        respondJson(s, 200, this.registry.services(parsePageParams(url.searchParams))),
      status: (s) => respondJson(s, 200, this.status()),
      crl: (s, _p, _st, url) => this.#crl(s, url),
      renewals: (s, _p, st) => handleRenewal(s, st.peer, opts.renewals, this.#log),
    };
    this.#routes = (Object.keys(HUB_ROUTES) as HubRoute[]).map((name) => ({
      ...HUB_ROUTES[name],
      handler: handlers[name],
    }));
    this.#controlContext = {
      registry: this.registry,
      limits: this.#limits,
      log: this.#log,
      quiet: this.#quiet,
      metrics: opts.metrics,
      tunnels: this.#tunnels,
      management: this.#management,
      welcomeHub: () => ({
        version: VERSION,
        dataPort: this.#dataAddr && (this.#opts.dataAdvertise ?? this.#dataAddr.port),
      }),
      hubList: () => this.#hubList,
    };
    this.#server = http2.createSecureServer({
      key: opts.keyPem,
      cert: opts.certPem,
      ca: opts.caPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      allowHTTP1: false,
      settings: {
        initialWindowSize: WINDOW_BYTES,
        maxConcurrentStreams: this.#limits.maxStreamsPerSession,
      },
    });
    // The raw TLS sockets, for close(): `session.socket` is a proxy that throws on destroy().
    this.#server.on("secureConnection", (socket: TLSSocket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("connection", (socket: import("node:net").Socket) => this.#gate.open(socket));
    this.#server.on("session", (session) => this.#onSession(session));
    this.#server.on("stream", (stream, headers) => this.#onStream(stream, headers));
    this.#server.on("tlsClientError", (err, socket) => {
      this.#opts.metrics?.refused("handshake");
      this.#quiet.info("handshake refused", { peer: socket.remoteAddress, err: errText(err) });
    });
    this.#server.on(
      "sessionError",
      (err) => this.#quiet.warn("session error", { err: errText(err) }),
    );
  }

  /** Starts listening; resolves with the bound address. */
  listen(addr: HostPort): Promise<HostPort> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen({ port: addr.port, host: addr.hostname, backlog: LISTEN_BACKLOG }, () => {
        this.#server.off("error", reject);
        const a = this.#server.address();
        const bound = typeof a === "object" && a ? { hostname: a.address, port: a.port } : addr;
        this.#log.info("listening", { addr: formatHostPort(bound) });
        // One timer walks the sessions rather than one timer per session: 10,000
        // endpoints would otherwise fire 1,000 timers a second.
        this.#pingSweep = setInterval(
          () => pingDueSessions(this.#sessions, this.#limits, this.#log),
          Math.min(1_000, this.#limits.pingIntervalMs),
        );
        try {
          this.#dataAddr = this.#dataPort?.start();
        } catch (err) {
          reject(err);
          return;
        }
        resolve(bound);
      });
    });
  }

  /** What `GET /api/status` answers. */
  status(): HubStatus {
    return {
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.#started) / 1000),
      sessions: this.#sessions.size,
      tunnels: this.#dataPort?.splices ?? 0,
      dataPort: this.#dataAddr?.port ?? null,
      dataConnections: this.#dataPort?.accepted ?? 0,
      dataRefused: this.#dataPort?.refused ?? 0,
      ...this.registry.counts(),
      controlConnections: { held: this.#gate.total, refused: this.#gate.refused },
      revocations: this.#opts.revocations.status(),
    };
  }

  /**
   * Serves a renewed hub certificate to new connections; sessions open now keep theirs (the
   * data port is plain TCP and holds no certificate).
   */
  setIdentity(identity: { caPem: string; certPem: string; keyPem: string }): void {
    this.#server.setSecureContext({
      key: identity.keyPem,
      cert: identity.certPem,
      ca: identity.caPem,
    });
  }

  /** Tells every agent, and each one that comes later, the mesh's hub list (`hub_list.ts`). */
  setHubList(hubs: HubListEntry[]): void {
    this.#hubList = hubs;
    for (const control of this.registry.controls()) control.send({ type: "hubs", hubs });
  }

  /** Destroys every session whose certificate serial is in `revoked`; tells agents of CRL `crlNumber`. */
  applyRevocations(revoked: Set<string>, crlNumber?: number): void {
    if (crlNumber !== undefined) {
      for (const control of this.registry.controls()) {
        control.send({ type: "crl", number: crlNumber });
      }
    }
    this.#tunnels.revoke(revoked);
    this.#tickets.voidSerials(revoked);
    this.#dataPort?.revoke(revoked);
    for (const [session, state] of this.#sessions) {
      if (!revoked.has(state.peer.serial)) continue;
      this.#log.warn("session closed: certificate revoked", {
        user: state.peer.user,
        serial: state.peer.serial,
        endpoint: state.endpointId,
      });
      session.destroy();
    }
  }

  /**
   * Stops accepting and closes every session's connection. The sockets are
   * destroyed rather than each HTTP/2 session (measured: `session.destroy()`
   * costs ~0.5 ms a session in Deno, so a hub with 10,000 endpoints took over
   * 5 s to stop); agents see the connection close and redial at once either way.
   */
  close(): Promise<void> {
    clearInterval(this.#pingSweep);
    this.#tunnels.close();
    this.#dataPort?.close();
    this.#management.close();
    this.registry.close();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }

  #onSession(session: ServerHttp2Session): void {
    let peer: Peer;
    try {
      peer = admit(
        session.socket as TLSSocket,
        (s) => this.#opts.revocations.isRevoked(s),
        this.#admissions,
      );
    } catch (err) {
      this.#opts.metrics?.peerRefused(err);
      this.#quiet.warn("peer refused", { peer: session.socket?.remoteAddress, err: errText(err) });
      session.destroy();
      return;
    }
    const state: SessionState = {
      peer,
      controls: 0,
      counted: false,
      peerPingAt: 0,
      pingDueAt: Date.now() + this.#limits.pingIntervalMs,
    };
    const userSessions = this.#userSessions.get(peer.user) ?? 0;
    if (this.#sessions.size >= this.#limits.maxSessions) {
      state.refusal = hubError(
        "hub_full",
        "The hub has reached its session limit; try another hub or later",
      );
      this.#opts.metrics?.refused("hub_full");
      this.#quiet.warn("session refused: hub full", { user: peer.user, peer: peer.address });
    } else if (userSessions >= this.#limits.maxSessionsPerUser) {
      state.refusal = hubError(
        "too_many_sessions",
        `User "${peer.user}" already holds ${this.#limits.maxSessionsPerUser} sessions on this hub`,
      );
      this.#opts.metrics?.refused("too_many_sessions");
      this.#quiet.warn("session refused: user limit", { user: peer.user, peer: peer.address });
    } else {
      state.counted = true;
      this.#userSessions.set(peer.user, userSessions + 1);
      this.#log.info("peer admitted", {
        user: peer.user,
        serial: peer.serial,
        peer: peer.address,
      });
    }
    this.#sessions.set(session, state);
    // A refused session lives only to answer its first request with the 429, and keeps counting
    // against its address until then; an admitted one counts against its user instead.
    let refusedTimer: ReturnType<typeof setTimeout> | undefined;
    if (state.refusal) refusedTimer = setTimeout(() => session.destroy(), REFUSED_SESSION_MS);
    else this.#gate.admitted(session.socket?.remoteAddress, session.socket?.remotePort);
    const memberAddress = state.refusal ? undefined : session.socket?.remoteAddress;
    if (memberAddress) this.#dataPort?.memberOnline(memberAddress);
    if (!session.destroyed) {
      session.setLocalWindowSize(WINDOW_BYTES);
      try {
        (session.socket as TLSSocket).setNoDelay?.(true); // control messages are small and latency-bound
      } catch { /* not settable on this socket */ }
    }
    session.on("ping", () => (state.peerPingAt = Date.now()));
    session.on(
      "error",
      (err) => this.#log.info("session error", { user: peer.user, err: errText(err) }),
    );
    session.on("close", () => {
      clearTimeout(refusedTimer);
      this.#tickets.voidOwner(state);
      this.#tunnels.sessionClosed(state);
      this.#dataPort?.sessionClosed(state);
      if (memberAddress) this.#dataPort?.memberOffline(memberAddress);
      this.#sessions.delete(session);
      if (state.counted) {
        const left = (this.#userSessions.get(peer.user) ?? 1) - 1;
        if (left > 0) this.#userSessions.set(peer.user, left);
        else this.#userSessions.delete(peer.user);
      }
      this.#log.info("session closed", {
        user: peer.user,
        endpoint: state.endpointId,
        peer: peer.address,
      });
    });
  }

  async #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => {}); // a reset stream is reported by its handler's close path
    const state = this.#sessions.get(stream.session as ServerHttp2Session);
    if (!state) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    try {
      if (state.refusal) {
        stream.session?.close();
        throw state.refusal;
      }
      const version = headers[PROTOCOL_HEADER];
      if (version !== String(PROTOCOL_VERSION)) {
        throw hubError(
          "protocol_mismatch",
          `This hub speaks ztm protocol ${PROTOCOL_VERSION}; the request said ${
            version ?? "nothing"
          }`,
        );
      }
      const url = new URL(String(headers[":path"] ?? "/"), "https://hub");
      const { route, params } = findRoute(this.#routes, String(headers[":method"]), url.pathname);
      await route.handler(stream, params, state, url, headers);
    } catch (err) {
      if (!(err instanceof ZtmError)) this.#log.error("request failed", { err: errText(err) });
      respondError(stream, err);
      stream.resume(); // a refused request's body is dropped, not kept until the peer ends it
    }
  }

  /** The CRL; with `?after=N`, 204 when it is not newer than number N (agents that hold it). */
  #crl(stream: ServerHttp2Stream, url: URL): void {
    const pem = this.#opts.revocations.crlPem();
    if (!pem) throw hubError("no_crl", "The hub has no CRL from the CA yet");
    const after = Number(url.searchParams.get("after") ?? -1);
    if (Number.isSafeInteger(after) && this.#opts.revocations.crlNumber() <= after) {
      stream.respond({ ":status": 204 });
      stream.end();
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/x-pem-file" });
    stream.end(pem);
  }

  #control(stream: ServerHttp2Stream, params: Params, state: SessionState): void {
    serveControl(this.#controlContext, stream, params.id, state);
  }

  #openTunnel(stream: ServerHttp2Stream, params: Params, state: SessionState): void {
    if (!state.endpointId) {
      throw hubError("not_registered", "Open a control stream before opening tunnels");
    }
    if (params.proto !== "tcp" && params.proto !== "udp") {
      throw hubError("bad_proto", `Unknown protocol "${params.proto}"`);
    }
    if (!this.#dataPort) {
      throw hubError("no_data_port", "This hub has no data port (--data-listen=off)");
    }
    try {
      this.#tunnels.open(
        stream,
        {
          endpoint: state.endpointId,
          user: state.peer.user,
          serial: state.peer.serial,
          session: state,
        },
        params.id,
        params.proto,
        params.name,
      );
    } catch (err) {
      this.#opts.metrics?.tunnelFailed(err);
      throw err;
    }
  }

  async #manage(stream: ServerHttp2Stream, params: Params, state: SessionState): Promise<void> {
    if (!state.endpointId) {
      throw hubError("not_registered", "Open a control stream before managing endpoints");
    }
    await this.#management.forward(stream, params.id, {
      endpoint: state.endpointId,
      user: state.peer.user,
    });
  }
}
