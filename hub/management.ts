/**
 * Management requests on the hub: it carries a signed request from one
 * endpoint's agent to another's control stream and brings the answer back
 * (see `shared/protocol.ts`, section 3). The hub never verifies or alters the
 * signed request — the target does — so this is plain forwarding with a
 * deadline.
 */
import type { ServerHttp2Stream } from "node:http2";
import { PayloadTooLarge } from "@ztm/shared/errors";
import { type AgentMessage, MANAGE_TIMEOUT_MS, MAX_MANAGE_BYTES } from "@ztm/shared/protocol";
import type { SignedRequest } from "@ztm/shared/signed_request";
import { readStreamText, StreamTooLarge } from "@ztm/shared/stream_text";
import { hubError } from "./errors.ts";
import type { Registry } from "./registry.ts";
import { respondError } from "./respond.ts";

interface Pending {
  caller: ServerHttp2Stream;
  target: string;
  timer: ReturnType<typeof setTimeout>;
}

/** Management requests in flight. Single-threaded. */
export class ManagementRelay {
  #registry: Registry;
  #pending = new Map<string, Pending>();

  constructor(registry: Registry) {
    this.#registry = registry;
  }

  /**
   * Reads a signed request from `stream` and passes it to endpoint `target`.
   * Throws for what the hub can tell at once (bad body, unknown or offline endpoint).
   */
  async forward(
    stream: ServerHttp2Stream,
    target: string,
    from: { endpoint: string; user: string },
  ): Promise<void> {
    const text = await readStreamText(stream, MAX_MANAGE_BYTES).catch((err) => {
      throw err instanceof StreamTooLarge ? new PayloadTooLarge(MAX_MANAGE_BYTES) : err;
    });
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      throw hubError("bad_json", "Management request is not JSON");
    }
    const t = this.#registry.get(target);
    const control = t.online ? this.#registry.control(t.id) : undefined;
    if (!control) {
      throw hubError("endpoint_offline", `Endpoint "${t.name}" is offline`);
    }
    const rid = crypto.randomUUID();
    const timer = setTimeout(() => {
      if (!this.#pending.delete(rid)) return;
      respondError(
        stream,
        hubError(
          "manage_timeout",
          `Endpoint "${t.name}" did not answer the management request in time`,
        ),
      );
    }, MANAGE_TIMEOUT_MS);
    this.#pending.set(rid, { caller: stream, target: t.id, timer });
    stream.on("close", () => {
      if (this.#pending.get(rid)?.caller === stream) {
        clearTimeout(timer);
        this.#pending.delete(rid);
      }
    });
    control.send({ type: "manage", rid, request: request as SignedRequest, from });
  }

  /** The target answered (on its control stream). */
  answered(endpointId: string, msg: Extract<AgentMessage, { type: "managed" }>): void {
    const p = this.#pending.get(String(msg.rid));
    if (!p || p.target !== endpointId) return;
    this.#pending.delete(String(msg.rid));
    clearTimeout(p.timer);
    const status = Number.isInteger(msg.status) && msg.status >= 200 && msg.status < 600
      ? msg.status
      : 502;
    if (p.caller.destroyed || p.caller.closed) return;
    p.caller.respond({ ":status": status, "content-type": "application/json" });
    p.caller.end(typeof msg.body === "string" ? msg.body : "");
  }

  /** The endpoint went offline: its pending requests fail at once. */
  endpointOffline(id: string): void {
    for (const [rid, p] of this.#pending) {
      if (p.target !== id) continue;
      this.#pending.delete(rid);
      clearTimeout(p.timer);
      respondError(
        p.caller,
        hubError("endpoint_offline", `Endpoint ${id} went offline`),
      );
    }
  }

  close(): void {
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
  }
}
