/**
 * The hub's data links between tunnels (see `shared/data_link.ts`). A
 * data-port connection that carried a tunnel to a clean end stays bound to
 * the control session whose ticket it presented: a caller's link (`out`)
 * waits for its agent's next `open`; a provider's link (`in`) is parked here
 * until a tunnel to its endpoint needs it.
 *
 * A link dies with its control session (idle ones at once, busy ones when
 * their tunnel ends), on any protocol error, and beyond `maxPerSession`
 * links per session. Single-threaded; methods are synchronous.
 */
import type { DataLink } from "@ztm/shared/data_link";
import { errText, type Logger } from "@ztm/shared/log";
import type { LinkRequest } from "@ztm/shared/protocol";

/** Whose a link is: the control session its ticket was minted over. */
export interface LinkOwner {
  endpoint: string;
  user: string;
  serial: string;
  session: object;
}

/** A data link bound to its owner; `out` for a caller's, `in` for a provider's. */
export interface BoundLink {
  link: DataLink;
  owner: LinkOwner;
  role: "in" | "out";
}

/** A parked provider link taken for a tunnel, with the read of its answer already under way. */
export interface ParkedLink {
  bound: BoundLink;
  answer: Promise<LinkRequest | null>;
}

/** Options for `DataLinks`. */
export interface DataLinksOptions {
  log: Logger;
  /** Most links one control session may keep. */
  maxPerSession?: number;
  /** Called with each `open` an idle caller link sends; the tunnel code takes the link from there. */
  onOpen: (bound: BoundLink, request: LinkRequest) => void;
}

/** Bound data links, by session and (parked provider links) by endpoint. */
export class DataLinks {
  #opts: Required<DataLinksOptions>;
  #bySession = new Map<object, Set<BoundLink>>();
  #parked = new Map<string, Map<BoundLink, Promise<LinkRequest | null>>>();
  #closedSessions = new WeakSet<object>();
  /** Caller links blocked in a read of their next `open`. */
  #waiting = new Set<BoundLink>();

  constructor(opts: DataLinksOptions) {
    this.#opts = { maxPerSession: 64, ...opts };
  }

  /** Links bound now (idle or carrying a tunnel). */
  get count(): number {
    let n = 0;
    for (const set of this.#bySession.values()) n += set.size;
    return n;
  }

  /**
   * A link whose tunnel ended cleanly: parks it (`in`) or waits for its
   * next `open` (`out`). Closes it instead when its session is gone or has
   * its fill of links.
   */
  idle(bound: BoundLink): void {
    const { owner, link } = bound;
    let set = this.#bySession.get(owner.session);
    if (link.closed || this.#closedSessions.has(owner.session)) return this.#drop(bound);
    if (!set?.has(bound)) {
      set ??= new Set();
      if (set.size >= this.#opts.maxPerSession) return this.#drop(bound);
      set.add(bound);
      this.#bySession.set(owner.session, set);
    }
    if (bound.role === "in") this.#park(bound);
    else this.#awaitOpen(bound);
  }

  /** Takes a parked link of `endpoint` for a tunnel, if there is one. */
  takeParked(endpoint: string): ParkedLink | undefined {
    const parked = this.#parked.get(endpoint);
    if (!parked) return undefined;
    for (const [bound, answer] of parked) {
      this.#unpark(bound);
      if (!bound.link.closed) return { bound, answer };
    }
    return undefined;
  }

  /** Closes a link for good (a protocol error or a failed tunnel). */
  drop(bound: BoundLink): void {
    this.#drop(bound);
  }

  /** The control session closed: its idle links close now, its busy ones when their tunnel ends. */
  sessionClosed(session: object): void {
    this.#closedSessions.add(session);
    const set = this.#bySession.get(session);
    if (!set) return;
    for (const bound of [...set]) {
      const parked = this.#parked.get(bound.owner.endpoint);
      if (parked?.has(bound)) this.#drop(bound);
    }
    // Idle caller links are blocked in a read: closing them ends that read.
    for (const bound of [...set]) if (this.#waiting.has(bound)) bound.link.close();
  }

  /** Closes every link. */
  close(): void {
    for (const set of this.#bySession.values()) for (const b of set) b.link.close();
    this.#bySession.clear();
    this.#parked.clear();
  }

  #park(bound: BoundLink): void {
    const key = bound.owner.endpoint;
    let parked = this.#parked.get(key);
    if (!parked) this.#parked.set(key, parked = new Map());
    // The read stays pending while parked: its end means the agent closed the link (or misbehaved).
    const answer = bound.link.readMessage<LinkRequest>();
    parked.set(bound, answer);
    answer.then(
      () => {
        if (this.#parked.get(key)?.has(bound)) this.#drop(bound);
      },
      () => this.#drop(bound),
    );
  }

  #unpark(bound: BoundLink): void {
    const parked = this.#parked.get(bound.owner.endpoint);
    parked?.delete(bound);
    if (parked?.size === 0) this.#parked.delete(bound.owner.endpoint);
  }

  async #awaitOpen(bound: BoundLink): Promise<void> {
    let request: LinkRequest | null;
    this.#waiting.add(bound);
    try {
      request = await bound.link.readMessage<LinkRequest>();
    } catch (err) {
      this.#opts.log.info("data link dropped", {
        endpoint: bound.owner.endpoint,
        err: errText(err),
      });
      return this.#drop(bound);
    } finally {
      this.#waiting.delete(bound);
    }
    if (request === null || this.#closedSessions.has(bound.owner.session)) return this.#drop(bound);
    this.#opts.onOpen(bound, request);
  }

  #drop(bound: BoundLink): void {
    this.#unpark(bound);
    bound.link.close();
    const set = this.#bySession.get(bound.owner.session);
    set?.delete(bound);
    if (set?.size === 0) this.#bySession.delete(bound.owner.session);
  }
}
