/**
 * Enrollment and renewal through the hub.
 *
 * **Enrollment port.** A device holding an invite has no certificate yet, and
 * the control port asks every peer for one at the TLS handshake, so the hub
 * serves enrollment on a port of its own (`--enroll-listen`, by default the
 * control port + 2): HTTPS with the hub's own certificate, two routes and
 * nothing else. `GET /ca` hands out the mesh CA certificate (the device
 * compares its SHA-256 with the fingerprint its invite pins, then verifies
 * this port's certificate against it); `POST /enroll` carries the device's
 * `{invite, endpoint, csr, proof}` to the CA and its answer back. The hub
 * cannot mint, read or reuse an invite: the proof is an HMAC over the CSR
 * keyed by the invite's secret, which the hub never sees. Each address may
 * make a few requests (a token bucket: `perAddressBurst`, then one every
 * `perAddressEveryMs`), few may be in flight at once, and the table of
 * addresses is bounded; a refusal never says more than the CA said.
 *
 * **Renewal.** On the control port (mutual TLS), `POST /api/renewals`
 * carries a member's renewal of the certificate its session was admitted
 * with to the CA; the CA checks that the request is signed by that
 * certificate's key. On success the session adopts the new certificate's
 * serial and expiry, so it is neither dropped at the old notAfter nor spared
 * a revocation of the new serial.
 */
import type { ServerHttp2Stream } from "node:http2";
import { BadRequest, errorBody, sharedError, type ZtmError } from "@ztm/shared/errors";
import { formatHostPort, type HostPort } from "@ztm/shared/flags";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { errText, type Logger } from "@ztm/shared/log";
import { concatBytes } from "@ztm/shared/concat_bytes";
import { readStreamText, StreamTooLarge } from "@ztm/shared/stream_text";
import type { Peer } from "./admit.ts";
import { hubError } from "./errors.ts";

/** Largest enrollment or renewal body (a CSR is under 1 KiB). */
export const MAX_ENROLL_BYTES = 16 * 1024;

/** Limits of the enrollment port. */
export interface EnrollmentLimits {
  /** Requests one address may make at once before it must wait. */
  perAddressBurst: number;
  /** Then one request per this many ms. */
  perAddressEveryMs: number;
  /** Addresses remembered (the oldest are forgotten first). */
  maxAddresses: number;
  /** Enrollments forwarded to the CA at once, all addresses together. */
  maxInFlight: number;
}

/** Defaults: a device needs one request or two; a guesser gets one every 5 s. */
export const DEFAULT_ENROLLMENT_LIMITS: EnrollmentLimits = {
  perAddressBurst: 10,
  perAddressEveryMs: 5_000,
  maxAddresses: 10_000,
  maxInFlight: 8,
};

/** Calls the CA for the hub: enrollments, renewals, the hub's announcement. */
export class CaRelay {
  constructor(readonly caUrl: string, readonly token: string | undefined) {}

  async #call(method: string, path: string, body?: string) {
    const res = await fetch(`${this.caUrl}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body,
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, body: await res.text() };
  }

  /** The CA's hub list (`GET /api/hubs`: announced hubs with live certificates). */
  hubs(): Promise<{ status: number; body: string }> {
    return this.#call("GET", "/api/hubs");
  }

  /** Forwards an enrollment; the CA's status and body, whatever they are. */
  enroll(body: string): Promise<{ status: number; body: string }> {
    return this.#call("POST", "/api/enrollments", body);
  }

  /** Forwards a renewal. */
  renew(body: string): Promise<{ status: number; body: string }> {
    return this.#call("POST", "/api/renewals", body);
  }

  /** Tells the CA where this hub is reached, so invites carry it. */
  async announce(serial: string, control: string[], enroll: string[]): Promise<void> {
    const res = await this.#call(
      "PUT",
      `/api/hubs/${serial}`,
      JSON.stringify({ control, enroll }),
    );
    if (res.status >= 400) {
      throw new Error(`the CA answered ${res.status}: ${res.body.trim().slice(0, 200)}`);
    }
  }
}

/** Per-address token buckets, bounded in number. */
class AddressLimiter {
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(readonly limits: EnrollmentLimits) {}

  get size(): number {
    return this.#buckets.size;
  }

  take(address: string): boolean {
    const now = Date.now();
    const { perAddressBurst: burst, perAddressEveryMs: every } = this.limits;
    let b = this.#buckets.get(address);
    if (b) {
      this.#buckets.delete(address); // re-inserted below: the map stays in use order
      b.tokens = Math.min(burst, b.tokens + (now - b.at) / every);
      b.at = now;
    } else {
      b = { tokens: burst, at: now };
      // Full buckets of addresses gone quiet carry nothing worth keeping.
      while (this.#buckets.size >= this.limits.maxAddresses) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
    }
    this.#buckets.set(address, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** What the enrollment port needs. */
export interface EnrollmentPortOptions {
  listen: HostPort;
  caPem: string;
  certPem: string;
  keyPem: string;
  relay: CaRelay;
  log: Logger;
  limits?: Partial<EnrollmentLimits>;
}

/** The JSON error answer of the enrollment port. */
function errorResponse(err: ZtmError): Response {
  const { status, body } = errorBody(err);
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

/** The hub's enrollment port. `start()`, then `close()`; `setIdentity()` after a renewal. */
export class EnrollmentPort {
  #opts: EnrollmentPortOptions;
  #limits: EnrollmentLimits;
  #limiter: AddressLimiter;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #inFlight = 0;
  #addr: HostPort | undefined;
  /** Requests refused by the per-address or in-flight limit since the start. */
  refused = 0;

  constructor(opts: EnrollmentPortOptions) {
    this.#opts = opts;
    this.#limits = { ...DEFAULT_ENROLLMENT_LIMITS, ...opts.limits };
    this.#limiter = new AddressLimiter(this.#limits);
  }

  /** Addresses the limiter remembers now (bounded by `maxAddresses`). */
  get trackedAddresses(): number {
    return this.#limiter.size;
  }

  /** Listens; resolves with the bound address. */
  start(listen: HostPort = this.#opts.listen): HostPort {
    const server = Deno.serve({
      hostname: listen.hostname,
      port: listen.port,
      cert: this.#opts.certPem,
      key: this.#opts.keyPem,
      onListen: () => {},
      onError: (err) => {
        this.#opts.log.warn("enrollment request failed", { err: errText(err) });
        return errorResponse(sharedError("internal", "Internal error"));
      },
    }, (req, info) => this.#handle(req, info.remoteAddr.hostname));
    this.#server = server;
    this.#addr = { hostname: server.addr.hostname, port: server.addr.port };
    this.#opts.log.info("enrollment port listening", { addr: formatHostPort(this.#addr) });
    return this.#addr;
  }

  /** Serves a renewed hub certificate: the port listens again on the same address. */
  async setIdentity(certPem: string, keyPem: string): Promise<void> {
    this.#opts = { ...this.#opts, certPem, keyPem };
    if (!this.#server || !this.#addr) return;
    const addr = this.#addr;
    await this.#server.shutdown();
    for (let i = 0;; i++) {
      try {
        this.start(addr);
        return;
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse) || i >= 40) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async close(): Promise<void> {
    await this.#server?.shutdown();
    this.#server = undefined;
  }

  async #handle(req: Request, address: string): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path === "/ca") {
      return new Response(this.#opts.caPem, {
        headers: { "content-type": "application/x-pem-file", "cache-control": "no-store" },
      });
    }
    if (path !== "/enroll") {
      return errorResponse(sharedError("unknown_route", "No such route"));
    }
    if (req.method !== "POST") {
      return errorResponse(sharedError("method_not_allowed", "Use POST"));
    }
    if (!this.#limiter.take(address) || this.#inFlight >= this.#limits.maxInFlight) {
      this.refused++;
      await req.body?.cancel().catch(() => {});
      return errorResponse(hubError("slow_down", "Too many enrollment requests; try later"));
    }
    this.#inFlight++;
    try {
      const body = await readBounded(req);
      const answer = await this.#opts.relay.enroll(body);
      if (answer.status >= 500) {
        this.#opts.log.warn("enrollment: the CA failed", { status: answer.status });
      }
      return new Response(answer.body, {
        status: answer.status,
        headers: { "content-type": "application/json", "cache-control": "no-store" },
      });
    } catch (err) {
      if (err instanceof BadRequest) return errorResponse(err);
      this.#opts.log.warn("enrollment: the CA is unreachable", { err: errText(err) });
      return errorResponse(hubError("ca_unreachable", "The hub cannot reach the CA right now"));
    } finally {
      this.#inFlight--;
    }
  }
}

async function readBounded(req: Request): Promise<string> {
  const reader = req.body?.getReader();
  if (!reader) throw hubError("bad_enrollment", "An enrollment has a JSON body");
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ENROLL_BYTES) {
      await reader.cancel().catch(() => {});
      throw hubError("too_large", `An enrollment is at most ${MAX_ENROLL_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

/**
 * `POST /api/renewals` on the control port: forwards the member's renewal of its own
 * session's certificate, and on success makes the session carry the new serial and expiry.
 */
export async function handleRenewal(
  stream: ServerHttp2Stream,
  peer: Peer,
  relay: CaRelay | undefined,
  log: Logger,
): Promise<void> {
  let text: string;
  try {
    text = await readStreamText(stream, MAX_ENROLL_BYTES);
  } catch (err) {
    throw err instanceof StreamTooLarge
      ? hubError("too_large", `A renewal is at most ${MAX_ENROLL_BYTES} bytes`)
      : err;
  }
  if (!relay) throw hubError("no_renewals", "This hub does not carry renewals");
  let serial: unknown;
  try {
    serial = JSON.parse(text)?.serial;
  } catch {
    throw hubError("bad_renewal", "A renewal is {serial, csr, time, signature}");
  }
  if (typeof serial !== "string" || serial.toLowerCase() !== peer.serial) {
    throw hubError(
      "not_your_certificate",
      "A session may renew only the certificate it was admitted with",
    );
  }
  const answer = await relay.renew(text).catch((err) => {
    log.warn("renewal: the CA is unreachable", { user: peer.user, err: errText(err) });
    return {
      status: 503,
      body: JSON.stringify(
        errorBody(hubError("ca_unreachable", "The hub cannot reach the CA right now")).body,
      ),
    };
  });
  if (answer.status === 201) {
    try {
      const cert = parseCertificate(JSON.parse(answer.body).certificate);
      const spki = new Uint8Array(cert.publicKey.rawData);
      if (spki.length === peer.spki.length && spki.every((v, i) => v === peer.spki[i])) {
        const previous = peer.serial;
        peer.serial = serialOf(cert);
        peer.notAfter = cert.notAfter.getTime();
        log.info("session certificate renewed", {
          user: peer.user,
          serial: peer.serial,
          previous,
        });
      }
    } catch (err) {
      log.warn("renewal: unreadable answer from the CA", { err: errText(err) });
    }
  }
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ":status": answer.status, "content-type": "application/json" });
  stream.end(answer.body);
}
