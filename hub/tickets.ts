/**
 * Tickets for the native data path. A ticket lets one TLS connection to the
 * hub's data port (which cannot ask for client certificates) attach to one
 * side of one tunnel. It is minted only over a mutual-TLS control session,
 * is 256 random bits, works once, expires within seconds, and dies with the
 * session that asked for it — so it is a bearer secret with a tiny window.
 */

/** How long a minted ticket stays claimable. */
export const TICKET_LIFETIME_MS = 10_000;

/** Which side of a tunnel a ticket attaches. */
export type TunnelSide = "caller" | "provider";

/** What a claimed ticket grants. */
export interface TicketGrant {
  sid: string;
  side: TunnelSide;
  /** The endpoint whose side this is, and its user (the connection stays bound to them). */
  endpoint: string;
  user: string;
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
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** The hub's live tickets. Single-threaded; every method is synchronous. */
export class Tickets {
  #live = new Map<string, Entry>();
  #lifetime: number;

  constructor(lifetimeMs = TICKET_LIFETIME_MS) {
    this.#lifetime = lifetimeMs;
  }

  /** Mints a ticket for `side` of tunnel `sid`, owned by the session object `owner`. */
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

  /** Voids every ticket of tunnel `sid` (the tunnel went another way, or failed). */
  voidTunnel(sid: string): void {
    for (const [t, e] of this.#live) if (e.sid === sid) this.#live.delete(t);
  }

  /** Voids every ticket minted for `owner` (its session closed). */
  voidOwner(owner: object): void {
    for (const [t, e] of this.#live) if (e.owner === owner) this.#live.delete(t);
  }

  /** Number of live tickets (for status). */
  get size(): number {
    return this.#live.size;
  }

  #sweep(now: number): void {
    for (const [t, e] of this.#live) if (e.expires < now) this.#live.delete(t);
  }
}
