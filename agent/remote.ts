/**
 * Remote management, both ends. The caller side signs a request for another
 * endpoint with this endpoint's certificate key, sends it through the hub,
 * and believes only an answer the target signed over that very request
 * (`verifyAnswer`). The target side verifies what arrives (chain, role, CRL,
 * target, expiry, nonce, signature), runs it as the signer through
 * `EndpointOps` (local policy, audit log), and signs its answer.
 *
 * Requests whose signature does not verify (garbage, another CA, revoked,
 * altered, expired, replayed, for another endpoint) never reach the audit
 * log, so they cannot push real entries out: they are counted and sampled
 * apart (`EndpointOps.noteUnverified`), logged once per kind, and each caller
 * may have only a few of them before it is answered 429 `too_many_refusals`.
 */
import { agentError } from "@ztm/shared/agent_api";
import { errorBody, safeText } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import type { EndpointRecord } from "@ztm/shared/protocol";
import { RefusalLog } from "@ztm/shared/refusal_log";
import {
  type NonceStore,
  parseSignedRequest,
  signAnswer,
  type SignedRequest,
  signRequest,
  verifyAnswer,
  verifySignedRequest,
} from "@ztm/shared/signed_request";
import type { EndpointOps } from "./endpoint_ops.ts";
import type { ManageHandler, MeshConfig, MeshRuntime } from "./runtime.ts";

/** Refusals of unverified requests a caller may run up before it is answered 429. */
export const UNVERIFIED_BURST = 20;
/** The caller earns one more such refusal every this many ms. */
export const UNVERIFIED_REFILL_MS = 3_000;
/** Callers whose refusals are tracked at once; the longest quiet is forgotten first. */
const MAX_TRACKED_CALLERS = 1_000;

/** A token bucket per caller for refusals of requests that did not verify. Single-threaded. */
export class RefusalBudget {
  #buckets = new Map<string, { tokens: number; at: number }>();
  #burst: number;
  #refillMs: number;

  constructor(burst = UNVERIFIED_BURST, refillMs = UNVERIFIED_REFILL_MS) {
    this.#burst = burst;
    this.#refillMs = refillMs;
  }

  /** Milliseconds until `caller` may be refused again (0: now). */
  wait(caller: string, now = Date.now()): number {
    const b = this.#bucket(caller, now);
    return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) * this.#refillMs);
  }

  /** Gives back one refusal `charge` took (the request verified after all). */
  refund(caller: string): void {
    const b = this.#buckets.get(caller);
    if (b) b.tokens = Math.min(this.#burst, b.tokens + 1);
  }

  /** Spends one refusal of `caller`'s budget. */
  charge(caller: string, now = Date.now()): void {
    const b = this.#bucket(caller, now);
    b.tokens = Math.max(0, b.tokens - 1);
    // Most recently charged last, so the first key is the one quiet longest.
    this.#buckets.delete(caller);
    this.#buckets.set(caller, b);
    if (this.#buckets.size > MAX_TRACKED_CALLERS) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
  }

  #bucket(caller: string, now: number): { tokens: number; at: number } {
    const b = this.#buckets.get(caller) ?? { tokens: this.#burst, at: now };
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) / this.#refillMs);
    b.at = now;
    return b;
  }
}

/** Sends and answers signed management requests. */
export class RemoteManagement {
  #ops: EndpointOps;
  #log: Logger;
  #nonces: NonceStore;
  #budget: RefusalBudget;
  #refusals = new Map<string, RefusalLog>();

  /** `nonces` must outlive restarts (the agent's store), or a restart reopens replays. */
  constructor(
    opts: { ops: EndpointOps; log: Logger; nonces: NonceStore; budget?: RefusalBudget },
  ) {
    this.#ops = opts.ops;
    this.#log = opts.log;
    this.#nonces = opts.nonces;
    this.#budget = opts.budget ?? new RefusalBudget();
  }

  /**
   * Signs `method path body` for endpoint `target` (as the hub knows it) and
   * returns its answer as a response. Throws a 502 `ZtmError`
   * (`unsigned_answer`, `forged_answer`) for an answer the target did not
   * sign over this request.
   */
  async send(
    mesh: MeshConfig,
    runtime: MeshRuntime,
    target: Pick<EndpointRecord, "id" | "name" | "user">,
    method: string,
    path: string,
    body: string,
  ): Promise<Response> {
    if (typeof target?.id !== "string" || typeof target.user !== "string") {
      throw agentError("bad_hub_response", "The hub's endpoint record is malformed");
    }
    const signed = await signRequest({
      method,
      path,
      body,
      target: target.id,
      from: mesh.endpointId,
    }, mesh);
    const raw = await runtime.manage(target.id, signed);
    let answer;
    try {
      answer = await verifyAnswer(raw.status, raw.body, signed, {
        caPem: mesh.ca,
        revoked: runtime.revoked(),
        endpointId: target.id,
        endpointName: typeof target.name === "string" ? target.name : undefined,
        user: target.user,
      });
    } catch (err) {
      this.#log.warn("remote answer refused", {
        mesh: mesh.name,
        endpoint: target.id,
        method,
        path,
        status: raw.status,
        err: errText(err),
      });
      throw err;
    }
    this.#log.info("remote request sent", {
      mesh: mesh.name,
      endpoint: target.id,
      method,
      path,
      status: answer.status,
    });
    return new Response(answer.body, {
      status: answer.status,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  }

  /** The handler that answers requests arriving for this endpoint in `mesh`. */
  handler(mesh: () => MeshConfig, runtime: () => MeshRuntime): ManageHandler {
    return async (raw, from) => {
      const config = mesh();
      // The hub's word for who is calling (the user of the caller's certificate, as the hub
      // admitted it): good enough to ration refusals, never to act on. By user, not endpoint,
      // so a member cannot multiply its ration by registering more endpoints.
      const caller = from.user;
      let request: SignedRequest | undefined;
      let verified = false;
      let answer: { status: number; body: string };
      try {
        const wait = this.#budget.wait(caller);
        if (wait > 0) {
          throw agentError(
            "too_many_refusals",
            `User "${from.user}" (endpoint "${from.endpoint}") sent too many management requests that did not verify; try again in ${
              Math.ceil(wait / 1000)
            } s`,
          );
        }
        // Charged up front, so requests in flight together cannot all pass the check at once.
        this.#budget.charge(caller);
        request = parseSignedRequest(raw);
        const signer = await verifySignedRequest(request, {
          caPem: config.ca,
          revoked: runtime().revoked(),
          endpointId: config.endpointId,
          nonces: this.#nonces,
        });
        verified = true;
        this.#budget.refund(caller);
        // The signed `from`, not the hub's word, is what the audit log records.
        const res = await this.#ops.run(
          config.name,
          { user: signer.user, via: request.from, remote: true },
          request.method,
          request.path,
          request.body,
        );
        answer = { status: res.status, body: await res.text() };
      } catch (err) {
        const { status, body } = errorBody(err);
        answer = { status, body: JSON.stringify(body) };
        if (!verified) this.#unverified(config.name, from, request, status, body.error);
      }
      // An answer to a request that parsed is signed over it; others (garbage, 429) are errors
      // the caller sees as such anyway.
      if (!request) return answer;
      try {
        const signed = await signAnswer(request, answer, {
          certificate: config.certificate,
          privateKey: config.privateKey,
          endpointId: config.endpointId,
        });
        return { status: answer.status, body: JSON.stringify(signed) };
      } catch (err) {
        this.#log.error("answer not signed", { mesh: config.name, err: errText(err) });
        return answer;
      }
    };
  }

  /** Counts, samples and logs (once per kind) a refusal of a request that did not verify. */
  #unverified(
    mesh: string,
    from: { endpoint: string; user: string },
    request: SignedRequest | undefined,
    status: number,
    error: { code: string; message: string },
  ): void {
    this.#ops.noteUnverified(mesh, {
      // The hub's word and the unverified request, as plain text: never raw control characters.
      user: `${safeText(String(from.user)).slice(0, 64)} (unverified)`,
      via: safeText(String(from.endpoint)).slice(0, 64),
      method: safeText(String(request?.method ?? "?")).slice(0, 10),
      path: safeText(String(request?.path ?? "?")).slice(0, 200),
      status,
      outcome: error.message,
      detail: "",
    });
    let log = this.#refusals.get(mesh);
    if (!log) {
      log = new RefusalLog(this.#log, "remote request refused", { mesh });
      this.#refusals.set(mesh, log);
    }
    log.refused(error.code, error.message, { endpoint: from.endpoint, user: from.user });
  }
}
