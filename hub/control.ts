/**
 * One endpoint's control stream at the hub (`POST /api/endpoints/{id}/control`,
 * see the message flow in `shared/protocol.ts`): the hello that registers the
 * endpoint (its id derived from the session certificate's key and the hello's
 * seed), the welcome and hub list, and then the agent's `services`, `accept`,
 * `refuse` and `managed` lines, each checked and bounded; the endpoint goes
 * offline when the stream closes.
 */
import http2, { type ServerHttp2Stream } from "node:http2";
import { hasControlChars, TooManyRequests, type ZtmError } from "@ztm/shared/errors";
import { errText, type Logger } from "@ztm/shared/log";
import { ENDPOINT_SEED_PATTERN, endpointIdOf, isEndpointName } from "@ztm/shared/endpoint_id";
import {
  type AgentMessage,
  checkPublishedServices,
  ENDPOINT_ID_PATTERN,
  type HubListEntry,
  type HubMessage,
  LineDecoder,
  parseMessage,
} from "@ztm/shared/protocol";
import type { Peer } from "./admit.ts";
import { hubError } from "./errors.ts";
import type { ControlChannel, Registry } from "./registry.ts";
import type { ManagementRelay } from "./management.ts";
import type { Tunnels } from "./tunnels.ts";
import type { LogThrottle } from "./log_throttle.ts";
import type { HubMetrics } from "./metrics.ts";
import { respondError } from "./respond.ts";

/** What one session holds at the hub. */
export interface SessionState {
  peer: Peer;
  /** The endpoint this session registered (its hello proved the id is its key's). */
  endpointId?: string;
  /** The endpoint id this session's first control stream named: the only one it may register. */
  claimed?: string;
  /** Control streams open on this session. */
  controls: number;
  /** Why every stream of this session is refused (hub full, user over its session limit). */
  refusal?: ZtmError;
  /** Counted in its user's sessions. */
  counted: boolean;
  /** When the hub next considers PINGing the peer (epoch ms). */
  pingDueAt: number;
  /** When the peer last sent a PING (epoch ms); 0: never. */
  peerPingAt: number;
}

/** The limits a control stream is held to (`HubLimits` in `server.ts`). */
export interface ControlLimits {
  maxControlStreamsPerSession: number;
  maxServicesPerEndpoint: number;
  maxServiceBytesPerEndpoint: number;
}

/** What the control streams share with the hub server. */
export interface ControlContext {
  registry: Registry;
  limits: ControlLimits;
  log: Logger;
  quiet: LogThrottle;
  metrics?: HubMetrics;
  tunnels: Tunnels;
  management: ManagementRelay;
  /** The `hub` of a welcome: version and the data port agents dial. */
  welcomeHub(): Extract<HubMessage, { type: "welcome" }>["hub"];
  /** The mesh's hub list, sent after the welcome (`hub_list.ts`). */
  hubList(): HubListEntry[];
}

/**
 * Serves the control stream `stream` of session `state` for endpoint `id`.
 * Throws (for the caller to answer) what it can tell before the stream is
 * taken: a bad id, a second endpoint on one session, too many control streams.
 */
export function serveControl(
  ctx: ControlContext,
  stream: ServerHttp2Stream,
  id: string,
  state: SessionState,
): void {
  if (!ENDPOINT_ID_PATTERN.test(id)) {
    throw hubError(
      "bad_endpoint_id",
      `Bad endpoint id "${id.slice(0, 80)}": ids are ep- and 32 hex digits, derived from ` +
        "the certificate's key (an agent from before key-bound ids must be upgraded)",
    );
  }
  // One endpoint per session, bound before the hello so that a session cannot open many
  // control streams for different ids at once.
  if (state.claimed !== undefined && state.claimed !== id) {
    throw hubError("session_has_endpoint", "This session already controls another endpoint");
  }
  if (state.controls >= ctx.limits.maxControlStreamsPerSession) {
    ctx.metrics?.refused("too_many_control_streams");
    ctx.quiet.warn("control stream refused: session limit", { user: state.peer.user });
    throw hubError(
      "too_many_control_streams",
      `A session may hold ${ctx.limits.maxControlStreamsPerSession} control streams`,
    );
  }
  ctx.registry.checkOwner(id, state.peer.user);
  state.claimed = id;
  state.controls++;
  const peer = state.peer;
  const channel: ControlChannel = {
    send: (msg) => {
      if (!stream.destroyed && !stream.closed) stream.write(JSON.stringify(msg) + "\n");
    },
    // Reset, not ended: an agent whose endpoint another session took over must see its
    // control stream close (a half-closed one looked connected to it while offline here).
    close: () => {
      if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    owner: state,
    serial: state.peer.serial,
  };
  const decoder = new LineDecoder();
  let registered = false;
  const hello = setTimeout(() => {
    if (!registered) respondError(stream, hubError("no_hello", "No hello within 10 s"));
  }, 10_000);
  const fail = (err: unknown) => {
    if (err instanceof TooManyRequests) {
      ctx.metrics?.refused(err.code);
      ctx.quiet.warn("endpoint refused: limit", { user: peer.user, code: err.code });
    }
    if (!registered) {
      respondError(stream, err);
      stream.pause(); // `data` listeners keep it flowing: drop what else comes
      stream.removeAllListeners("data");
      stream.resume();
    } else {
      channel.send({ type: "error", code: "bad_message", message: errText(err) });
      stream.end();
    }
  };
  const services = (value: unknown) => {
    const list = checkPublishedServices(value);
    if (list.length > ctx.limits.maxServicesPerEndpoint) {
      throw hubError(
        "too_many_services",
        `An endpoint may publish ${ctx.limits.maxServicesPerEndpoint} services on this hub; ` +
          `this one sent ${list.length}`,
      );
    }
    const bytes = JSON.stringify(list).length;
    if (bytes > ctx.limits.maxServiceBytesPerEndpoint) {
      throw hubError(
        "too_many_services",
        `An endpoint's services may take ${ctx.limits.maxServiceBytesPerEndpoint} bytes ` +
          `with their user lists on this hub; these take ${bytes}`,
      );
    }
    return list;
  };
  stream.on("data", (chunk: Uint8Array) => {
    let lines: string[];
    try {
      lines = decoder.push(chunk);
    } catch (err) {
      fail(err);
      return;
    }
    for (const line of lines) {
      try {
        const msg = parseMessage<AgentMessage>(line);
        if (!registered) {
          if (msg.type !== "hello") {
            throw hubError("no_hello", "The first control message must be hello");
          }
          if (typeof msg.name !== "string" || !isEndpointName(msg.name)) {
            throw hubError(
              "bad_name",
              "hello.name is not a valid endpoint name (names never take the id form ep-…)",
            );
          }
          const seed = typeof msg.seed === "string" ? msg.seed : "";
          if (!ENDPOINT_SEED_PATTERN.test(seed) || endpointIdOf(peer.spki, seed) !== id) {
            throw hubError(
              "endpoint_not_yours",
              `Endpoint id ${id} is not derived from this certificate's key and the hello's seed`,
            );
          }
          const version = String(msg.version ?? "?").slice(0, 40);
          if (hasControlChars(version)) {
            throw hubError("bad_version", "hello.version holds control characters");
          }
          const previous = ctx.registry.connect(id, {
            name: msg.name,
            user: peer.user,
            version,
            address: peer.address,
            services: services(msg.services),
            serial: peer.serial,
          }, channel);
          previous?.close();
          registered = true;
          clearTimeout(hello);
          state.endpointId = id;
          stream.respond({ ":status": 200, "content-type": "application/x-ndjson" });
          channel.send({
            type: "welcome",
            endpoint: ctx.registry.get(id),
            hub: ctx.welcomeHub(),
          });
          const hubs = ctx.hubList();
          if (hubs.length) channel.send({ type: "hubs", hubs });
          ctx.log.info("endpoint online", {
            endpoint: id,
            user: peer.user,
            peer: peer.address,
          });
        } else if (msg.type === "services") {
          ctx.registry.setServices(id, services(msg.services));
        } else if (msg.type === "accept") {
          ctx.tunnels.accept(id, String(msg.sid));
        } else if (msg.type === "refuse") {
          ctx.tunnels.refuse(
            id,
            String(msg.sid),
            Number(msg.status),
            String(msg.code ?? ""),
            String(msg.message ?? ""),
          );
        } else if (msg.type === "managed") {
          ctx.management.answered(id, msg);
        }
      } catch (err) {
        fail(err);
        return;
      }
    }
  });
  stream.on("close", () => {
    clearTimeout(hello);
    state.controls--;
    if (registered && ctx.registry.disconnect(id, channel)) {
      ctx.log.info("endpoint offline", { endpoint: id, user: peer.user });
      ctx.management.endpointOffline(id);
      ctx.tunnels.endpointOffline(id);
    }
  });
}
