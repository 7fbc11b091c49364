/**
 * Remote management, both ends. The caller side signs a request for another
 * endpoint with this endpoint's certificate key and sends it through the hub;
 * the target side verifies what arrives (chain, role, CRL, target, expiry,
 * nonce, signature) and only then runs it as the signer through
 * `EndpointOps`, which applies the local policy and writes the audit log.
 */
import { errorBody, safeText } from "@ztm/shared/errors";
import type { Logger } from "@ztm/shared/log";
import {
  type NonceStore,
  parseSignedRequest,
  signRequest,
  verifySignedRequest,
} from "@ztm/shared/signed_request";
import type { EndpointOps } from "./endpoint_ops.ts";
import type { ManageHandler, MeshConfig, MeshRuntime } from "./runtime.ts";

/** Sends and answers signed management requests. */
export class RemoteManagement {
  #ops: EndpointOps;
  #log: Logger;
  #nonces: NonceStore;

  /** `nonces` must outlive restarts (the agent's store), or a restart reopens replays. */
  constructor(opts: { ops: EndpointOps; log: Logger; nonces: NonceStore }) {
    this.#ops = opts.ops;
    this.#log = opts.log;
    this.#nonces = opts.nonces;
  }

  /** Signs `method path body` for endpoint `targetId` and returns its answer as a response. */
  async send(
    mesh: MeshConfig,
    runtime: MeshRuntime,
    targetId: string,
    method: string,
    path: string,
    body: string,
  ): Promise<Response> {
    const signed = await signRequest({
      method,
      path,
      body,
      target: targetId,
      from: mesh.endpointId,
    }, mesh);
    const answer = await runtime.manage(targetId, signed);
    this.#log.info("remote request sent", {
      mesh: mesh.name,
      endpoint: targetId,
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
      // The hub's word, recorded only for refusals, and only as plain text.
      const claimed = {
        user: `${safeText(String(from.user)).slice(0, 80)} (unverified)`,
        via: safeText(String(from.endpoint)).slice(0, 80),
        remote: true,
      };
      let method = "?";
      let path = "?";
      try {
        const request = parseSignedRequest(raw);
        method = request.method;
        path = request.path;
        const signer = await verifySignedRequest(request, {
          caPem: config.ca,
          revoked: runtime().revoked(),
          endpointId: config.endpointId,
          nonces: this.#nonces,
        });
        // The signed `from`, not the hub's word, is what the audit log records.
        const res = await this.#ops.run(
          config.name,
          { user: signer.user, via: request.from, remote: true },
          request.method,
          request.path,
          request.body,
        );
        return { status: res.status, body: await res.text() };
      } catch (err) {
        const { status, body } = errorBody(err);
        this.#log.warn("remote request refused", {
          mesh: config.name,
          endpoint: from.endpoint,
          user: from.user,
          code: body.error.code,
        });
        this.#ops.auditRefusal(config.name, claimed, method.slice(0, 10), path.slice(0, 200), err);
        return { status, body: JSON.stringify(body) };
      }
    };
  }
}
