/**
 * Every hub of one mesh at once: one `HubLink` per bootstrap address, each
 * with its own session, PING, backoff and state, all registering the same
 * endpoint. Requests go to the preferred live hub (lowest PING round trip)
 * and fall back to the next when that hub cannot answer; control messages
 * (services) go to every live hub. The newest CRL any link verified is shared
 * with the others, and only a newer one is written to the CRL file.
 */
import { ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import type { VerifiedCrl } from "@ztm/shared/crl";
import type { AgentMessage, EndpointRecord, MeshService, Page } from "@ztm/shared/protocol";
import type { PairTicket } from "@ztm/shared/peer_protocol";
import type { DataAddress } from "./peer/dialer.ts";
import { type HubFailure, HubLink, type HubLinkOptions, type LinkState } from "./hub_link.ts";

/** One hub's state for the API. */
export interface HubState {
  address: string;
  connected: boolean;
  lastError: string | null;
  rttMs: number | null;
  since: string;
}

/** What each link is told, with the link it came from. */
export interface HubSetOptions extends
  Omit<
    HubLinkOptions,
    "onOpen" | "onWelcome" | "onLost" | "onCrl" | "shouldSaveCrl"
  > {
  onOpen: (link: HubLink, msg: Parameters<HubLinkOptions["onOpen"]>[0]) => void | Promise<void>;
  onWelcome?: (link: HubLink, hub: { hostname: string; dataPort: number | undefined }) => void;
  onLost?: (link: HubLink, why: string) => void;
  onCrl?: (revoked: Set<string>) => void;
}

/**
 * Whether a failed request may be asked of the next hub: that hub could not
 * answer (not connected, broken stream, 5xx) or does not see the endpoint (404).
 */
export function tryNextHub(err: unknown): boolean {
  if (!(err instanceof ZtmError)) return true;
  return err.status === 404 || err.status >= 500;
}

/** The hub links of one mesh. Methods may be called concurrently; none after `close()`. */
export class HubSet {
  readonly links: HubLink[];
  #addresses: string[];
  #saved = -1;
  #data = new Map<HubLink, DataAddress>();

  constructor(opts: HubSetOptions) {
    const addresses = [...new Set(opts.config.bootstraps)];
    this.#addresses = addresses;
    this.links = addresses.map((address) => {
      const link: HubLink = new HubLink({
        ...opts,
        config: opts.config,
        addresses: [address],
        onOpen: (msg) => opts.onOpen(link, msg),
        onWelcome: (hub) => {
          if (hub.dataPort) this.#data.set(link, { hostname: hub.hostname, port: hub.dataPort });
          else this.#data.delete(link);
          opts.onWelcome?.(link, hub);
        },
        onLost: (why) => opts.onLost?.(link, why),
        onCrl: (_revoked, crl) => this.#onCrl(link, crl, opts),
        shouldSaveCrl: (n) => {
          if (n <= this.#saved) return false;
          this.#saved = n;
          return true;
        },
      });
      return link;
    });
  }

  #onCrl(from: HubLink, crl: VerifiedCrl, opts: HubSetOptions): void {
    for (const other of this.links) if (other !== from) other.offerCrl(crl);
    opts.onCrl?.(this.revoked());
  }

  start(): void {
    for (const link of this.links) link.start();
  }

  /** The live links, preferred first: lowest PING round trip, then bootstrap order. */
  live(): HubLink[] {
    const rtt = (l: HubLink) => l.rttMs() ?? Number.MAX_SAFE_INTEGER;
    return this.links
      .filter((l) => l.state().connected)
      .map((l, i) => ({ l, i }))
      .sort((a, b) => rtt(a.l) - rtt(b.l) || a.i - b.i)
      .map(({ l }) => l);
  }

  /** Each hub's state, in bootstrap order. */
  hubs(): HubState[] {
    return this.links.map((l, i) => {
      const s = l.state();
      const rtt = l.rttMs();
      return {
        address: this.#addresses[i],
        connected: s.connected,
        lastError: s.lastError,
        rttMs: rtt === undefined ? null : Math.round(rtt * 10) / 10,
        since: s.since,
      };
    });
  }

  /** The mesh's link state as one: connected if any hub is; hub and since of the preferred one. */
  state(): LinkState {
    const preferred = this.live()[0];
    const states = this.links.map((l) => l.state());
    const alarm = states.find((s) => s.crlAlarm)?.crlAlarm ?? null;
    if (preferred) return { ...preferred.state(), crlAlarm: alarm };
    const failed = states.find((s) => s.lastError) ?? states[0];
    return { ...failed, connected: false, crlAlarm: alarm };
  }

  /** Sends a control message to every live hub; whether any took it. */
  send(msg: AgentMessage): boolean {
    let sent = false;
    for (const link of this.links) sent = link.send(msg) || sent;
    return sent;
  }

  /**
   * Runs `ask` on the preferred live hub, then on the next while the error
   * says another hub might answer (`tryNextHub`). Throws the last error.
   */
  async first<T>(ask: (link: HubLink) => Promise<T>): Promise<T> {
    const live = this.live();
    if (live.length === 0) {
      throw new ServiceUnavailable("hub_unreachable", this.#unreachableMessage());
    }
    let last: unknown;
    for (const link of live) {
      try {
        return await ask(link);
      } catch (err) {
        last = err;
        if (!tryNextHub(err)) throw err;
      }
    }
    throw last;
  }

  /** The data port of `link`'s hub, as its last welcome named it. */
  data(link: HubLink): DataAddress | undefined {
    return this.#data.get(link);
  }

  /**
   * Opens a tunnel through a hub both sides are on: `open` gets the ticket
   * request to `path` on one hub and that hub's data port, preferred hub first,
   * the next when this one does not see the provider (404/503) or cannot answer.
   */
  tunnel<T>(
    path: string,
    open: (ticket: () => Promise<PairTicket>, data: DataAddress) => Promise<T>,
  ): Promise<T> {
    return this.first((link) => {
      const data = this.#data.get(link);
      if (!data) {
        return Promise.reject(
          new ServiceUnavailable("no_data_port", "The hub has no data port: no tunnels through it"),
        );
      }
      return open(() => link.request<PairTicket>("POST", path), data);
    });
  }

  /**
   * Asks every live hub at once; the answers in preference order (an endpoint
   * may be on some hubs only). Throws the preferred hub's error if none answered.
   */
  async all<T>(ask: (link: HubLink) => Promise<T>): Promise<T[]> {
    const live = this.live();
    if (live.length === 0) {
      throw new ServiceUnavailable("hub_unreachable", this.#unreachableMessage());
    }
    const settled = await Promise.allSettled(live.map(ask));
    const answers = settled.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    if (answers.length === 0) throw (settled[0] as PromiseRejectedResult).reason;
    return answers;
  }

  /** An endpoint listing from every live hub, merged by id (online if any hub sees it). */
  async endpoints(path: string): Promise<Page<EndpointRecord>> {
    return mergeEndpoints(await this.all((l) => l.request<Page<EndpointRecord>>("GET", path)));
  }

  /** A service listing from every live hub, merged (a provider is online if any hub sees it). */
  async services(path: string): Promise<Page<MeshService>> {
    return mergeServices(await this.all((l) => l.request<Page<MeshService>>("GET", path)));
  }

  /** One endpoint: the record of a hub that sees it online, else the preferred hub's. */
  async endpoint(path: string): Promise<EndpointRecord> {
    const records = await this.all((l) => l.request<EndpointRecord>("GET", path));
    return records.find((r) => r.online) ?? records[0];
  }

  request<T>(method: string, path: string, body?: string): Promise<T> {
    return this.first((l) => l.request<T>(method, path, body));
  }

  /** A raw request to the preferred live hub (next on a broken session, not on an answer). */
  requestRaw(
    method: string,
    path: string,
    body?: string,
  ): Promise<{ status: number; body: string }> {
    return this.first((l) => l.requestRaw(method, path, body));
  }

  #unreachableMessage(): string {
    const why = this.links.map((l, i) => {
      const e = l.state().lastError;
      return `${this.#addresses[i]}${e ? `: ${e}` : ""}`;
    });
    return `Not connected to any hub (${why.join("; ")})`;
  }

  /** Serials on the newest CRL any link verified. */
  revoked(): Set<string> {
    let best: HubLink | undefined;
    for (const l of this.links) if (!best || l.crlNumber() > best.crlNumber()) best = l;
    return best?.revoked() ?? new Set();
  }

  /** Resolves once any hub is connected (or rejects after `timeoutMs`). */
  async waitConnected(timeoutMs: number): Promise<void> {
    try {
      await Promise.any(this.links.map((l) => l.waitConnected(timeoutMs)));
    } catch {
      throw new ServiceUnavailable("hub_unreachable", this.#unreachableMessage());
    }
  }

  /** Null once any hub is connected; else every hub's failed dials once all failed. */
  firstSession(timeoutMs: number): Promise<HubFailure[] | null> {
    return new Promise((resolve) => {
      let left = this.links.length;
      const failures: HubFailure[] = [];
      if (left === 0) return resolve(failures);
      for (const link of this.links) {
        link.firstSession(timeoutMs).then((f) => {
          if (f === null) return resolve(null);
          failures.push(...f);
          if (--left === 0) resolve(failures);
        });
      }
    });
  }

  /** The hub certificate of the preferred live hub (`renew.ts`). */
  preferred(): HubLink | undefined {
    return this.live()[0];
  }

  async close(): Promise<void> {
    await Promise.all(this.links.map((l) => l.close()));
  }
}

/**
 * Merges the same page from several hubs (preferred first) by endpoint id: an
 * endpoint is online if any hub sees it online, and its record is then that hub's.
 */
export function mergeEndpoints(pages: Page<EndpointRecord>[]): Page<EndpointRecord> {
  const byId = new Map<string, EndpointRecord>();
  for (const page of pages) {
    for (const e of page.items) {
      const held = byId.get(e.id);
      if (!held || (!held.online && e.online)) byId.set(e.id, e);
    }
  }
  return mergedPage(pages, [...byId.values()]);
}

/** Merges the same service page from several hubs: providers by endpoint, online if any hub says so. */
export function mergeServices(pages: Page<MeshService>[]): Page<MeshService> {
  const byKey = new Map<string, MeshService>();
  for (const page of pages) {
    for (const svc of page.items) {
      const key = `${svc.proto}\n${svc.name}\n${svc.user}`;
      const held = byKey.get(key);
      if (!held) {
        byKey.set(key, { ...svc, providers: [...svc.providers] });
        continue;
      }
      for (const p of svc.providers) {
        const i = held.providers.findIndex((q) => q.endpoint === p.endpoint);
        if (i < 0) held.providers.push(p);
        else if (!held.providers[i].online && p.online) held.providers[i] = p;
      }
    }
  }
  return mergedPage(pages, [...byKey.values()]);
}

function mergedPage<T>(pages: Page<T>[], items: T[]): Page<T> {
  const base = pages[0];
  const extra = items.length - base.items.length;
  return {
    items: items.slice(0, Math.max(base.limit, base.items.length)),
    total: Math.max(...pages.map((p) => p.total), base.total + Math.max(0, extra)),
    offset: base.offset,
    limit: base.limit,
  };
}
