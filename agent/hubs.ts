/**
 * Every hub of one mesh at once: one `HubLink` per bootstrap address, each
 * with its own session, PING, backoff and state, all registering the same
 * endpoint. Requests go to the preferred live hub (lowest PING round trip)
 * and fall back to the next when that hub cannot answer; control messages
 * (services) go to every live hub. The newest CRL any link verified is shared
 * with the others, and only a newer one is written to the CRL file.
 */
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import type { VerifiedCrl } from "@ztm/shared/crl";
import type { HubState } from "@ztm/shared/agent_api";
import { errText } from "@ztm/shared/log";
import type {
  AgentMessage,
  EndpointRecord,
  HubListEntry,
  MeshService,
  Page,
} from "@ztm/shared/protocol";
import type { PairTicket } from "@ztm/shared/peer_protocol";
import type { DataAddress } from "./peer/dialer.ts";
import { type HubFailure, HubLink, type HubLinkOptions, type LinkState } from "./hub_link.ts";
import { type CheckedHub, checkHubEntry } from "./hub_list.ts";
import { HubCertificateWatch } from "./renew.ts";

/** Most hubs one mesh links to at once (bootstraps and hubs learnt from hub lists). */
export const MAX_HUBS = 16;

export type { HubState } from "@ztm/shared/agent_api";

/** What each link is told, with the link it came from. */
export interface HubSetOptions extends
  Omit<
    HubLinkOptions,
    "onOpen" | "onWelcome" | "onLost" | "onCrl" | "shouldSaveCrl" | "onHubs" | "claimHub"
  > {
  onOpen: (link: HubLink, msg: Parameters<HubLinkOptions["onOpen"]>[0]) => void | Promise<void>;
  onWelcome?: (link: HubLink, hub: { hostname: string; dataPort: number | undefined }) => void;
  onLost?: (link: HubLink, why: string) => void;
  onCrl?: (revoked: Set<string>) => void;
  /** Hubs learnt from hub lists before (their addresses, one list per hub), dialled at start. */
  listed?: string[][];
  /** Told the learnt hubs (addresses, one list per hub) each time they change, to keep them. */
  onListed?: (listed: string[][]) => void;
}

/**
 * Whether a failed request may be asked of the next hub: that hub could not
 * answer (not connected, broken stream, 5xx) or does not see the endpoint (404).
 */
export function tryNextHub(err: unknown): boolean {
  if (!(err instanceof ZtmError)) return true;
  return err.status === 404 || err.status >= 500;
}

/** Codes of a hub's own answer that say it does not see the target (another hub may). */
const NOT_HERE = new Set(["unknown_endpoint", "endpoint_offline"]);

interface LinkInfo {
  /** What the state shows: the bootstrap address, or a listed hub's first address. */
  address: string;
  addresses: string[];
  origin: HubState["origin"];
  /** For a listed hub: what its certificate said when a hub list last named it. */
  listed?: CheckedHub;
  /** Adopts the hub's renewed certificates on this link's session. */
  watch: HubCertificateWatch;
}

/** The hub links of one mesh. Methods may be called concurrently; none after `close()`. */
export class HubSet {
  links: HubLink[] = [];
  #opts: HubSetOptions;
  #info = new Map<HubLink, LinkInfo>();
  #saved = -1;
  #data = new Map<HubLink, DataAddress>();
  /** Which link holds which hub (by its key), so one hub is never held twice. */
  #claims = new Map<string, HubLink>();
  #started = false;
  #closed = false;
  /** Per link: a hub list is being checked, and the newest one sent meanwhile. */
  #checking = new Map<HubLink, HubListEntry[] | null>();
  /** Entries refused already (certificate and address), so a repeated list is not logged again. */
  #refused = new Set<string>();

  constructor(opts: HubSetOptions) {
    this.#opts = opts;
    for (const address of new Set(opts.config.bootstraps)) {
      this.#add({ address, addresses: [address], origin: "bootstrap" });
    }
    for (const addresses of opts.listed ?? []) {
      if (this.links.length >= MAX_HUBS) break;
      if (!addresses.length || addresses.some((a) => this.#holds(a))) continue;
      // Checked again when a hub lists it; until then only its addresses are known.
      this.#add({ address: addresses[0], addresses, origin: "listed" });
    }
  }

  /** Whether some link already dials `address`. */
  #holds(address: string): boolean {
    for (const info of this.#info.values()) if (info.addresses.includes(address)) return true;
    return false;
  }

  #add(info: Omit<LinkInfo, "watch">): HubLink {
    const opts = this.#opts;
    const link: HubLink = new HubLink({
      ...opts,
      config: opts.config,
      addresses: info.addresses,
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
      onHubs: (hubs) => this.#onHubs(link, hubs),
      claimHub: (key) => {
        const holder = this.#claims.get(key);
        if (holder && holder !== link && holder.sessionAlive() && this.#info.has(holder)) {
          // One hub under two addresses: a bootstrap keeps it, a listed duplicate goes.
          if (this.#isListed(holder) && !this.#isListed(link)) {
            this.#drop(holder, "same hub as a bootstrap");
          } else {
            if (this.#isListed(link)) queueMicrotask(() => this.#drop(link, "same hub"));
            return `same hub as ${this.#info.get(holder)!.address}`;
          }
        }
        this.#claims.set(key, link);
        return undefined;
      },
    });
    // The session outlives the hub certificate it began with when the hub renews it.
    const watch = new HubCertificateWatch(opts.config, {
      hubCertificate: () => link.hubCertificate(),
      address: () => (link.state().connected ? link.state().hub : null),
      revoked: () => this.revoked(),
      adoptHubRenewal: (serial, notAfter) => link.adoptHubRenewal(serial, notAfter),
    }, opts.log);
    this.#info.set(link, { ...info, watch });
    this.links.push(link);
    if (this.#started) {
      link.start();
      watch.start();
    }
    return link;
  }

  /** Whether `link`'s hub came from a hub list (not a bootstrap). */
  #isListed(link: HubLink): boolean {
    return this.#info.get(link)?.origin === "listed";
  }

  /** A hub list from `from`'s hub: checks each entry and links to the new hubs (`hub_list.ts`). */
  #onHubs(from: HubLink, hubs: HubListEntry[]): void {
    if (this.#checking.has(from)) {
      // One list at a time per hub: a hub that sends many gets only its newest checked next.
      this.#checking.set(from, hubs);
      return;
    }
    this.#checking.set(from, null);
    this.#checkList(from, hubs).catch((err) => {
      this.#opts.log.warn("hub list not used", {
        mesh: this.#opts.config.name,
        err: errText(err),
      });
    }).finally(() => {
      const next = this.#checking.get(from);
      this.#checking.delete(from);
      if (next && !this.#closed) this.#onHubs(from, next);
    });
  }

  async #checkList(from: HubLink, hubs: HubListEntry[]): Promise<void> {
    const revoked = this.revoked();
    const fromAddress = this.#info.get(from)?.address;
    let added = false;
    for (const entry of hubs) {
      if (this.#closed) return;
      let hub: CheckedHub;
      try {
        hub = await checkHubEntry(entry, this.#opts.config.ca, revoked);
      } catch (err) {
        const key = `${entry.certificate}\n${entry.addresses.join(",")}`;
        if (!this.#refused.has(key)) {
          if (this.#refused.size >= 1024) this.#refused.clear();
          this.#refused.add(key);
          this.#opts.log.warn("hub list entry refused: not a hub of this mesh", {
            mesh: this.#opts.config.name,
            peer: fromAddress,
            addr: entry.addresses.join(",").slice(0, 300),
            err: errText(err),
          });
        }
        continue;
      }
      // Already held: by key (this hub under another name, or renewed), or by address.
      const holder = [...this.#info.entries()].find(([l, info]) =>
        l.hubKey() === hub.key || info.listed?.key === hub.key ||
        hub.addresses.some((a) => info.addresses.includes(a))
      );
      if (holder) {
        const [, info] = holder;
        if (info.origin === "listed") info.listed = hub;
        continue;
      }
      if (this.links.length >= MAX_HUBS) {
        this.#opts.log.warn("hub list names more hubs than a mesh links to", {
          mesh: this.#opts.config.name,
          count: MAX_HUBS,
        });
        break;
      }
      this.#opts.log.info("hub learnt from the hub list", {
        mesh: this.#opts.config.name,
        peer: fromAddress,
        addr: hub.addresses.join(","),
        serial: hub.serial,
      });
      this.#add({
        address: hub.addresses[0],
        addresses: hub.addresses,
        origin: "listed",
        listed: hub,
      });
      added = true;
    }
    if (added) this.#saveListed();
  }

  #saveListed(): void {
    this.#opts.onListed?.(
      [...this.#info.values()].filter((i) => i.origin === "listed").map((i) => i.addresses),
    );
  }

  /** Closes and forgets the listed hubs whose certificate is revoked or has expired. */
  #dropListed(revoked: Set<string>): void {
    const now = Date.now();
    for (const [link, info] of [...this.#info]) {
      if (info.origin !== "listed") continue;
      const seen = link.hubCertificate()?.serial;
      // The certificate the hub showed last, else the one its listing carried.
      const serial = seen ?? info.listed?.serial;
      const gone = serial !== undefined && revoked.has(serial);
      const expired = info.listed && now >= info.listed.notAfter && !link.state().connected;
      if (!gone && !expired) continue;
      this.#drop(link, "its certificate is revoked or has expired");
    }
  }

  /** Closes and forgets a listed hub's link (`why` goes to the log). */
  #drop(link: HubLink, why: string): void {
    const info = this.#info.get(link);
    if (info?.origin !== "listed") return;
    this.#opts.log.warn("listed hub left", {
      mesh: this.#opts.config.name,
      addr: info.address,
      err: why,
    });
    this.#info.delete(link);
    this.#data.delete(link);
    info.watch.close();
    this.links = this.links.filter((l) => l !== link);
    void link.close();
    this.#saveListed();
  }

  #onCrl(from: HubLink, crl: VerifiedCrl, opts: HubSetOptions): void {
    for (const other of this.links) if (other !== from) other.offerCrl(crl);
    this.#dropListed(crl.serials);
    opts.onCrl?.(this.revoked());
  }

  start(): void {
    this.#started = true;
    for (const link of this.links) link.start();
    for (const info of this.#info.values()) info.watch.start();
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

  /** Each hub's state: bootstraps in their order, then listed hubs as learnt. */
  hubs(): HubState[] {
    return this.links.map((l) => {
      const s = l.state();
      const rtt = l.rttMs();
      return {
        address: this.#info.get(l)!.address,
        origin: this.#info.get(l)!.origin,
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
      throw agentError("hub_unreachable", this.#unreachableMessage());
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
          agentError("no_data_port", "The hub has no data port: no tunnels through it"),
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
      throw agentError("hub_unreachable", this.#unreachableMessage());
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

  /**
   * A management request (`HUB_PATHS.manage`): to the preferred live hub, then the next while
   * the hub itself answers that it does not see the target (the target's own answers, signed,
   * are returned whatever they say).
   */
  async manage(path: string, body: string): Promise<{ status: number; body: string }> {
    let last: { status: number; body: string } | undefined;
    try {
      return await this.first(async (l) => {
        const answer = await l.requestRaw("POST", path, body);
        if ((answer.status === 404 || answer.status === 503) && NOT_HERE.has(codeOf(answer.body))) {
          last = answer;
          throw agentError("not_here", "This hub does not see the endpoint");
        }
        return answer;
      });
    } catch (err) {
      if (last) return last;
      throw err;
    }
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
    const why = this.links.map((l) => {
      const e = l.state().lastError;
      return `${this.#info.get(l)!.address}${e ? `: ${e}` : ""}`;
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
      throw agentError("hub_unreachable", this.#unreachableMessage());
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
    this.#closed = true;
    for (const info of this.#info.values()) info.watch.close();
    await Promise.all(this.links.map((l) => l.close()));
  }
}

/** The `error.code` of a JSON error body, or "". */
function codeOf(body: string): string {
  try {
    const code = JSON.parse(body)?.error?.code;
    return typeof code === "string" ? code : "";
  } catch {
    return "";
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
