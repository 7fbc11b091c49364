/**
 * The agent's link to a hub: one HTTP/2 session over mutual TLS, its control
 * stream, and requests on that session (tunnels run on pair connections
 * through the hub's data port, `peer/`).
 *
 * The hub's certificate must chain to the mesh CA, name the dialled host and
 * carry the serverAuth role (`hub_identity.ts`), and not be on the newest
 * CA-signed CRL the link has verified (`link_crl.ts`), whatever the hub
 * serves. The link PINGs the hub (`hub_ping.ts`) and reconnects — at once
 * after a GOAWAY, otherwise with exponential backoff and jitter — cycling
 * through the bootstrap addresses.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { isIP } from "node:net";
import type { PeerCertificate } from "node:tls";
import { commonNameOf, parseCertificate } from "@ztm/shared/certs";
import type { VerifiedCrl } from "@ztm/shared/crl";
import { hubPingAnswered } from "./metrics.ts";
import { agentError } from "@ztm/shared/agent_api";
import { errorBody, ZtmError } from "@ztm/shared/errors";
import { parseHostPort } from "@ztm/shared/flags";
import { errText, type Logger } from "@ztm/shared/log";
import { RefusalLog } from "@ztm/shared/refusal_log";
import {
  type AgentMessage,
  checkHubMessage,
  HUB_PATHS,
  type HubListEntry,
  type HubMessage,
  onControlMessages,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  WINDOW_BYTES,
} from "@ztm/shared/protocol";
import type { MeshConfig } from "./runtime.ts";
import { checkHubIdentity, hubCertificateFacts } from "./hub_identity.ts";
import { startHubPing } from "./hub_ping.ts";
import { errorMessage, errorOfHubAnswer, readBody, readResponse } from "./hub_response.ts";
import { LinkCrl } from "./link_crl.ts";

/** How long a dial may take from TCP connect to the hub's welcome. */
const CONNECT_TIMEOUT_MS = 10_000;
const MIN_BACKOFF_MS = 250;
/** The first redial after losing an admitted session comes within this many ms. */
const FIRST_REDIAL_SPREAD_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

/** What a silent TLS 1.3 refusal means, in words a person can act on. */
export const REFUSED_BY_HUB = "hub refused our certificate: revoked, expired or from another CA";

/** Options for `HubLink`. */
export interface HubLinkOptions {
  config: MeshConfig;
  log: Logger;
  /** The hello to send on every (re)connection. */
  hello: () => Extract<AgentMessage, { type: "hello" }>;
  /** Called for each (checked) tunnel request from the hub; a rejection is logged, never left unhandled. */
  onOpen: (msg: Extract<HubMessage, { type: "open" }>) => void | Promise<void>;
  /** Told the revoked serials (and the CRL) each time a newer verified CRL is adopted. */
  onCrl?: (revoked: Set<string>, crl: VerifiedCrl) => void;
  /** Asked before writing an adopted CRL to `crlFile` (several links share one file). */
  shouldSaveCrl?: (number: number) => boolean;
  /** Told on every welcome (once connected) where the hub is and whether it has a data port. */
  onWelcome?: (hub: { hostname: string; dataPort: number | undefined }) => void;
  /** Told when an established link is lost (the session, and what was bound to it, is gone). */
  onLost?: (why: string) => void;
  /**
   * Told each hub list the hub sends (checked for shape only: `hubs.ts` checks each
   * certificate before anything is dialled).
   */
  onHubs?: (hubs: HubListEntry[]) => void;
  /**
   * Asked, once the hub's certificate is verified and before the hello, whether this link may
   * use that hub (its key, SPKI DER in hex): a reason to stand down (another link of the set
   * already holds that hub under another address), or undefined.
   */
  claimHub?: (hubKey: string) => string | undefined;
  /** Answers a management request the hub passed on (the handler verifies it). */
  onManage: (
    msg: Extract<HubMessage, { type: "manage" }>,
  ) => Promise<{ status: number; body: string }>;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** Where the newest verified CRL of this mesh is kept (`0600`); none: memory only. */
  crlFile?: string;
  /**
   * The hub addresses this link dials (default: the config's `bootstraps`). The config itself
   * stays shared, so a renewed certificate put in it is presented at the next dial.
   */
  addresses?: string[];
}

/** One failed dial: the hub address and why (the TLS or socket error as Node words it). */
export interface HubFailure {
  hub: string;
  why: string;
}

/** Link state for the API. */
export interface LinkState {
  connected: boolean;
  hub: string | null;
  lastError: string | null;
  since: string;
  /** Why the last CRL seen (from the hub or `crlFile`) was refused; null while all is well. */
  crlAlarm: string | null;
}

/** One mesh's hub link. Methods may be called concurrently; none after `close()`. */
export class HubLink {
  #opts: HubLinkOptions;
  #log: Logger;
  #session: ClientHttp2Session | undefined;
  #control: ClientHttp2Stream | undefined;
  #connected = false;
  #hub: string | null = null;
  #lastError: string | null = null;
  #since = new Date().toISOString();
  #closed = false;
  #attempt = 0;
  #next = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #waiters = new Set<() => void>();
  /** Dials that failed since the last welcome, oldest first (at most one round of addresses). */
  #failures: HubFailure[] = [];
  #crl: LinkCrl;
  /** Serial of the hub certificate this link checked at its last connect. */
  #hubSerial: string | undefined;
  /** Lines from the hub that were refused, counted so a hostile hub cannot flood the log. */
  #refusals: RefusalLog;
  /** `error` lines from the hub, counted likewise. */
  #hubErrors: RefusalLog;
  /** The hub certificate's notAfter (epoch ms): the link leaves the hub then. */
  #hubNotAfter = Infinity;
  /** The hub certificate (DER) as checked at the handshake. */
  #hubRaw: Uint8Array | undefined;
  /** The hub certificate's key (SPKI DER, hex), as last verified. */
  #hubKey: string | undefined;
  /** The last answered PING's round trip (ms), for choosing among hubs; undefined until one. */
  #rttMs: number | undefined;

  constructor(opts: HubLinkOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#refusals = new RefusalLog(opts.log, "bad message from hub", { mesh: opts.config.name });
    this.#hubErrors = new RefusalLog(opts.log, "hub reported an error", { mesh: opts.config.name });
    this.#crl = new LinkCrl({
      config: opts.config,
      log: opts.log,
      refusals: this.#refusals,
      crlFile: opts.crlFile,
      shouldSaveCrl: opts.shouldSaveCrl,
      onCrl: opts.onCrl,
      session: () => this.#session,
      fetched: () => {
        // The hub's own certificate revoked while connected: leave it; reconnecting checks
        // the CRL again and refuses (a hub whose key is lost is no longer this mesh's hub).
        if (this.#hubSerial && this.#crl.has(this.#hubSerial)) {
          this.#log.warn("hub certificate revoked; disconnecting", {
            mesh: this.#opts.config.name,
            serial: this.#hubSerial,
          });
          this.#session?.destroy();
        }
      },
    });
  }

  /** Runs a handler of a hub message; whatever it throws or rejects with is logged, never left unhandled. */
  #handle(what: string, task: () => void | Promise<void>): void {
    const failed = (err: unknown) => this.#refusals.refused(`${what}_failed`, errText(err));
    try {
      task()?.catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  /** Starts connecting (in the background). */
  start(): void {
    this.#crl.load();
    this.#connect();
  }

  state(): LinkState {
    return {
      connected: this.#connected,
      hub: this.#hub,
      lastError: this.#lastError,
      since: this.#since,
      crlAlarm: this.#crl.alarm(),
    };
  }

  /** Resolves once connected (or rejects after `timeoutMs`). */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.#connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        if (!this.#connected) return;
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(done);
        reject(agentError("hub_unreachable", this.#unreachableMessage()));
      }, timeoutMs);
      this.#waiters.add(done);
    });
  }

  /**
   * Waits for the first session: resolves `null` once connected, or the failed
   * dials once every hub address has failed once (or `timeoutMs` passed), so a
   * join can tell its user at once that the hub is not reachable and why.
   */
  firstSession(timeoutMs: number): Promise<HubFailure[] | null> {
    const round = this.#addresses().length;
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#connected && this.#failures.length < round) return false;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(this.#connected ? null : [...this.#failures]);
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve(this.#connected ? null : [...this.#failures]);
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** The hub certificate this session checked (DER), its serial and notAfter (ms) now. */
  hubCertificate(): { serial: string; notAfter: number; raw: Uint8Array } | undefined {
    if (!this.#connected || !this.#hubSerial || !this.#hubRaw) return undefined;
    return { serial: this.#hubSerial, notAfter: this.#hubNotAfter, raw: this.#hubRaw };
  }

  /**
   * Adopts the hub's renewed certificate on this session (`renew.ts` checked that it is the
   * same hub key, chains to the mesh CA and is not revoked), so the link stays past the old
   * certificate's notAfter.
   */
  adoptHubRenewal(serial: string, notAfter: number): void {
    this.#hubSerial = serial;
    this.#hubNotAfter = notAfter;
  }

  /** The key (SPKI DER, hex) of the hub certificate this link last verified, connected or not. */
  hubKey(): string | undefined {
    return this.#hubKey;
  }

  /** Whether a session is set up or being set up (past the dial, not yet failed). */
  sessionAlive(): boolean {
    const s = this.#session;
    return !!s && !s.destroyed && !s.closed;
  }

  /** Sends a control message if connected; returns whether it was sent. */
  send(msg: AgentMessage): boolean {
    const c = this.#control;
    if (!this.#connected || !c || c.destroyed || c.closed) return false;
    c.write(JSON.stringify(msg) + "\n");
    return true;
  }

  /** A JSON request to the hub. Throws the hub's error, or `ServiceUnavailable` when not connected. */
  async request<T>(method: string, path: string, requestBody?: string): Promise<T> {
    const { status, body } = await this.requestRaw(method, path, requestBody);
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      throw agentError(
        "bad_hub_response",
        `The hub answered ${status} with a body that is not JSON`,
      );
    }
    if (status >= 400) throw errorOfHubAnswer(status, value);
    return value as T;
  }

  /** A request to the hub answered with its raw status and body, whatever the status. */
  async requestRaw(
    method: string,
    path: string,
    requestBody?: string,
  ): Promise<{ status: number; body: string }> {
    const session = this.#usableSession();
    const stream = session.request({
      ":method": method,
      ":path": path,
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
      ...(requestBody === undefined ? {} : { "content-type": "application/json" }),
    }, {
      endStream: requestBody === undefined,
    });
    if (requestBody !== undefined) stream.end(requestBody);
    return await readResponse(stream);
  }

  #addresses(): string[] {
    return this.#opts.addresses ?? this.#opts.config.bootstraps;
  }

  /** Closes the session and stops reconnecting. */
  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const session = this.#session;
    this.#setDisconnected(null);
    if (!session || session.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => session.destroy(), 2_000);
      session.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.#control?.end();
    });
  }

  #usableSession(): ClientHttp2Session {
    const s = this.#session;
    if (!this.#connected || !s || s.destroyed || s.closed) {
      throw agentError("hub_unreachable", this.#unreachableMessage());
    }
    return s;
  }

  #unreachableMessage(): string {
    return `Not connected to the hub${this.#lastError ? `: ${this.#lastError}` : ""}`;
  }

  #connect(): void {
    if (this.#closed) return;
    const { config } = this.#opts;
    const addresses = this.#addresses();
    const address = addresses[this.#next % addresses.length];
    this.#next++;
    this.#hub = address;
    const { hostname, port } = parseHostPort(address);
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    let failed = false;
    let hubCert: PeerCertificate | undefined;
    const session = http2.connect(`https://${host}:${port}`, {
      ca: config.ca,
      cert: config.certificate,
      key: config.privateKey,
      minVersion: "TLSv1.2",
      servername: isIP(hostname) ? undefined : hostname,
      settings: { initialWindowSize: WINDOW_BYTES },
      checkServerIdentity: (name, cert) => {
        const err = checkHubIdentity(name, cert);
        if (!err) hubCert = cert;
        return err;
      },
    });
    this.#session = session;
    // A dial into a dead route or a handshake cut off half-way would otherwise wait for TCP to give up.
    const deadline = setTimeout(() => {
      if (!this.#connected) fail(`no answer from the hub within ${CONNECT_TIMEOUT_MS / 1000} s`);
    }, CONNECT_TIMEOUT_MS);
    const fail = (why: string) => {
      clearTimeout(deadline);
      if (failed) return;
      failed = true;
      if (this.#session === session) this.#session = undefined;
      if (!session.destroyed) session.destroy();
      this.#scheduleReconnect(why);
    };
    session.on("error", (err) => {
      // Past a verified hub certificate and before admission, a connection cut under our write is
      // the hub refusing our certificate (TLS 1.3 checks the client's after its Finished; under load
      // the refusal shows as EPIPE or a reset instead of the alert).
      const cut = /EPIPE|ECONNRESET/.test(errText(err));
      fail(cut && hubCert && !this.#connected ? REFUSED_BY_HUB : errText(err));
    });
    session.on("goaway", () => {
      // A session the hub never admitted ends in GOAWAY too: that is a refusal, and backs off.
      const admitted = this.#connected;
      if (admitted) {
        this.#log.info("hub sent goaway; reconnecting", { mesh: config.name, peer: address });
        this.#attempt = 0;
      }
      fail(admitted ? "hub closed the session (GOAWAY)" : REFUSED_BY_HUB);
    });
    session.on(
      "close",
      () => fail(this.#connected ? "connection to the hub closed" : REFUSED_BY_HUB),
    );
    session.once("connect", async () => {
      if (failed || session.destroyed) return;
      session.setLocalWindowSize(WINDOW_BYTES);
      try {
        session.socket?.setNoDelay?.(true); // control messages are small and latency-bound
      } catch { /* not settable on this socket */ }
      try {
        await this.#checkHubRevocation(session, hubCert);
      } catch (err) {
        // A hub that closed the session under the CRL request refused our certificate.
        fail(session.destroyed || session.closed ? REFUSED_BY_HUB : errText(err));
        return;
      }
      // The link may have been closed (the mesh left) while the CRL was checked: the
      // session is destroyed then, and a request on it would throw out of this handler.
      if (failed || this.#closed || session.destroyed || session.closed) return;
      const taken = this.#hubKey ? this.#opts.claimHub?.(this.#hubKey) : undefined;
      if (taken) return fail(taken);
      this.#openControl(session, address, fail);
    });
  }

  async #checkHubRevocation(
    session: ClientHttp2Session,
    hubCert: PeerCertificate | undefined,
  ): Promise<void> {
    if (!hubCert) throw new Error("hub presented no certificate");
    await this.#crl.loaded;
    const facts = hubCertificateFacts(hubCert);
    this.#hubSerial = facts.serial;
    this.#hubNotAfter = facts.notAfter;
    this.#hubRaw = facts.raw;
    this.#hubKey = facts.key;
    await this.#crl.fetch(session);
    // The newest CRL this agent knows decides, not what this hub served (it may be
    // revoked and serve an older CRL, or none).
    if (this.#crl.has(this.#hubSerial)) throw new Error("hub certificate is revoked");
  }

  /** The last answered PING's round trip in ms (undefined before the first, or when not connected). */
  rttMs(): number | undefined {
    return this.#connected ? this.#rttMs : undefined;
  }

  /** Adopts a CRL another link of this mesh verified, if it is newer than this link's. */
  offerCrl(crl: VerifiedCrl): void {
    this.#crl.adopt(crl, false);
    if (this.#hubSerial && this.#crl.has(this.#hubSerial)) this.#session?.destroy();
  }

  /** The number of the newest CRL this link has verified (-1: none). */
  crlNumber(): number {
    return this.#crl.number();
  }

  /** Serials on the newest CA-signed CRL this link has verified. */
  revoked(): Set<string> {
    return this.#crl.revoked();
  }

  async #onManage(msg: Extract<HubMessage, { type: "manage" }>): Promise<void> {
    let reply: { status: number; body: string };
    try {
      reply = await this.#opts.onManage(msg);
      if (!Number.isInteger(reply.status) || typeof reply.body !== "string") {
        throw new Error("management handler gave no answer");
      }
    } catch (err) {
      const { status, body } = errorBody(err);
      reply = { status, body: JSON.stringify(body) };
    }
    this.send({ type: "managed", rid: msg.rid, status: reply.status, body: reply.body });
  }

  #openControl(session: ClientHttp2Session, address: string, fail: (why: string) => void): void {
    const { config } = this.#opts;
    const control = session.request({
      ":method": "POST",
      ":path": HUB_PATHS.control(config.endpointId),
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    }, { endStream: false });
    this.#control = control;
    control.on("error", () => {});
    control.write(JSON.stringify(this.#opts.hello()) + "\n");
    let answered = false;
    control.once("response", (headers) => {
      answered = true;
      const status = Number(headers[":status"]);
      if (status !== 200) {
        readBody(control, 64 * 1024).then(
          (body) => fail(`hub refused the endpoint (${status}): ${errorMessage(body)}`),
          () => fail(`hub refused the endpoint (${status})`),
        );
        return;
      }
      this.#onControlOpen(session, control, address, fail);
    });
    control.on("close", () => {
      if (!answered) fail(REFUSED_BY_HUB);
      else if (this.#control === control) fail("control stream closed by the hub");
    });
  }

  #onControlOpen(
    session: ClientHttp2Session,
    control: ClientHttp2Stream,
    address: string,
    fail: (why: string) => void,
  ): void {
    const { config } = this.#opts;
    let welcomed = false;
    onControlMessages<HubMessage>(control, {
      fail: (err) => fail(errText(err)),
      check: checkHubMessage,
      badLine: (err) =>
        this.#refusals.refused(err instanceof ZtmError ? err.code : "handler_failed", errText(err)),
      message: (msg) => {
        // One welcome per control stream, and nothing but an error before it: a second welcome
        // would start a second PING timer and send the services again.
        if (msg.type === "welcome" ? welcomed : !welcomed && msg.type !== "error") {
          this.#refusals.refused("out_of_order", `Hub message "${msg.type}" out of order`);
          return;
        }
        if (msg.type === "welcome") {
          welcomed = true;
          this.#attempt = 0;
          this.#failures = [];
          this.#connected = true;
          this.#lastError = null;
          this.#since = new Date().toISOString();
          this.#log.info("hub connected", {
            mesh: config.name,
            peer: address,
            endpoint: config.endpointId,
          });
          const dataPort = Number(msg.hub?.dataPort);
          this.#opts.onWelcome?.({
            hostname: parseHostPort(address).hostname,
            dataPort: Number.isInteger(dataPort) && dataPort > 0 && dataPort < 65536
              ? dataPort
              : undefined,
          });
          for (const w of this.#waiters) w();
          startHubPing(session, {
            everyMs: this.#opts.pingIntervalMs ?? PING_INTERVAL_MS,
            timeoutMs: this.#opts.pingTimeoutMs ?? PING_TIMEOUT_MS,
            log: this.#log,
            mesh: config.name,
            notAfter: () => this.#hubNotAfter,
            answered: (rttMs) => {
              this.#rttMs = rttMs;
              hubPingAnswered(this.#opts.config, this.#hub, rttMs);
            },
            fail,
          });
        } else if (msg.type === "open") {
          this.#handle("open", () => this.#opts.onOpen(msg));
        } else if (msg.type === "manage") {
          this.#handle("manage", () => this.#onManage(msg));
        } else if (msg.type === "crl") {
          this.#handle("crl", () => this.#crl.announce(msg.number));
        } else if (msg.type === "hubs") {
          this.#handle("hubs", () => this.#opts.onHubs?.(msg.hubs));
        } else if (msg.type === "error") {
          this.#hubErrors.refused(msg.code.slice(0, 64), msg.message.slice(0, 500));
        }
      },
    });
  }

  #setDisconnected(why: string | null): void {
    if (this.#connected) this.#since = new Date().toISOString();
    this.#connected = false;
    this.#control = undefined;
    this.#rttMs = undefined;
    if (why) this.#lastError = why;
  }

  #scheduleReconnect(why: string): void {
    const wasConnected = this.#connected;
    this.#setDisconnected(why);
    if (this.#closed) return;
    const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.#attempt);
    // After losing an admitted session, redial within a second, spread at random: when a hub
    // restarts, its thousands of agents would otherwise all knock in the same instant.
    const delay = this.#attempt === 0 && wasConnected
      ? Math.round(Math.random() * FIRST_REDIAL_SPREAD_MS)
      : Math.round(base * (0.5 + Math.random()));
    this.#attempt++;
    this.#log.warn(wasConnected ? "hub link lost" : "hub connection failed", {
      mesh: this.#opts.config.name,
      peer: this.#hub ?? undefined,
      err: why,
      ms: delay,
    });
    if (wasConnected) this.#opts.onLost?.(why);
    else {
      this.#failures.push({ hub: this.#hub ?? "", why });
      if (this.#failures.length > this.#addresses().length) this.#failures.shift();
      for (const w of this.#waiters) w();
    }
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#connect(), delay);
  }
}

/** The user a certificate PEM names (its CN). */
export function userOf(certificatePem: string): string {
  return commonNameOf(parseCertificate(certificatePem)) ?? "";
}
