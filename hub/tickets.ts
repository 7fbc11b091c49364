/**
 * Tickets for the data port. A ticket lets one plain TCP connection to the
 * hub's data port (where nobody presents a certificate) become one side of
 * one pair splice. It is minted only over a mutual-TLS control session, is
 * 256 random bits, works once, expires within seconds, and dies with the
 * session that asked for it and with that session's certificate — so it is
 * a bearer secret with a tiny window. It grants a splice, never plaintext:
 * what flows through is the agents' own end-to-end TLS.
 */
import { TICKET_LIFETIME_MS } from "@ztm/shared/peer_protocol";

/** Which side of a pair a ticket attaches. */
export type PairSide = "caller" | "provider";

/** What a claimed ticket grants. */
export interface TicketGrant {
  /** The pair (one splice) it attaches to. */
  sid: string;
  side: PairSide;
  /** The endpoint whose side this is. */
  endpoint: string;
  /** The certificate serial of the control session that asked for it (for revocation). */
  serial: string;
}

/** A claimed ticket: its grant and the control session that minted it. */
export interface ClaimedTicket extends TicketGrant {
  owner: object;
}

interface Entry extends ClaimedTicket {
  expires: number;
}

function randomTicket(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The hub's live tickets. Single-threaded; every method is synchronous. */
export class Tickets {
  #live = new Map<string, Entry>();
  #lifetime: number;

  constructor(lifetimeMs = TICKET_LIFETIME_MS) {
    this.#lifetime = lifetimeMs;
  }

  /** Mints a ticket for `side` of pair `sid`, owned by the session object `owner`. */
  mint(grant: TicketGrant, owner: object, now = Date.now()): string {
    if (this.#live.size > 10_000) this.#sweep(now);
    const ticket = randomTicket();
    this.#live.set(ticket, { ...grant, expires: now + this.#lifetime, owner });
    return ticket;
  }

  /** Spends `ticket`: its grant, or undefined if unknown, used or expired. */
  claim(ticket: string, now = Date.now()): ClaimedTicket | undefined {
    const e = this.#live.get(ticket);
    if (!e) return undefined;
    this.#live.delete(ticket);
    if (e.expires < now) return undefined;
    const { expires: _, ...claimed } = e;
    return claimed;
  }

  /** Voids every ticket of pair `sid` (it failed or was refused). */
  voidPair(sid: string): void {
    for (const [t, e] of this.#live) if (e.sid === sid) this.#live.delete(t);
  }

  /** Voids every ticket minted for `owner` (its session closed). */
  voidOwner(owner: object): void {
    for (const [t, e] of this.#live) if (e.owner === owner) this.#live.delete(t);
  }

  /** Voids every ticket minted for a session of a revoked certificate. */
  voidSerials(revoked: Set<string>): void {
    for (const [t, e] of this.#live) if (revoked.has(e.serial)) this.#live.delete(t);
  }

  /** Number of live tickets (for status). */
  get size(): number {
    return this.#live.size;
  }

  #sweep(now: number): void {
    for (const [t, e] of this.#live) if (e.expires < now) this.#live.delete(t);
  }
}
