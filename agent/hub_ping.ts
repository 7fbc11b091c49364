/**
 * A hub link's liveness: PINGs on its HTTP/2 session every interval, and the
 * end of the session when a PING goes unanswered or the hub's certificate
 * expires (TLS checked it at the handshake only). The round trips are what
 * `hubs.ts` chooses the preferred hub by.
 */
import type { ClientHttp2Session } from "node:http2";
import type { Logger } from "@ztm/shared/log";

/** Options for `startHubPing`. */
export interface HubPingOptions {
  everyMs: number;
  timeoutMs: number;
  log: Logger;
  /** The mesh, for the log. */
  mesh: string;
  /** The hub certificate's notAfter (epoch ms) now: a renewal may move it. */
  notAfter: () => number;
  /** Told each answered PING's round trip (ms). */
  answered: (rttMs: number) => void;
  /** Ends the session with this reason. */
  fail: (why: string) => void;
}

/**
 * PINGs the hub every interval until the session closes; an unanswered PING
 * ends the session through `fail` with that reason (destroying the session
 * first would report its streams' close instead, as if the hub had closed them).
 */
export function startHubPing(session: ClientHttp2Session, opts: HubPingOptions): void {
  const { everyMs: every, timeoutMs: timeout, log, fail } = opts;
  const timer = setInterval(() => {
    if (session.destroyed) {
      clearInterval(timer);
      return;
    }
    // TLS checked the hub's certificate at the handshake only.
    if (Date.now() >= opts.notAfter()) {
      log.warn("hub certificate expired; disconnecting", { mesh: opts.mesh });
      fail("hub certificate expired");
      return;
    }
    const dead = setTimeout(() => {
      log.warn("hub unresponsive; reconnecting", { mesh: opts.mesh });
      fail(`hub did not answer PING within ${timeout / 1000} s`);
    }, timeout);
    try {
      // Timed here: the callback's own duration is always 0 in Deno 2.9.3.
      const sent = performance.now();
      session.ping((err) => {
        clearTimeout(dead);
        if (err && !session.destroyed) session.destroy(err);
        else if (!err) opts.answered(performance.now() - sent);
      });
    } catch {
      clearTimeout(dead);
    }
  }, every);
  session.once("close", () => clearInterval(timer));
}
