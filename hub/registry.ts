/**
 * Endpoints and their services, in hub memory only (agents re-register after
 * a hub restart).
 *
 * An endpoint id belongs to the user whose certificate first registered it;
 * nobody else may take it over or publish under it. Endpoints are kept in an
 * array sorted by name, so an unfiltered page costs O(page) after a binary
 * search; a search (`q`) scans. Endpoints are also indexed by lower-case name
 * (a lookup by name costs O(1)) and services by (proto, name, user), so a
 * service query costs O(services matched), not O(endpoints). An offline
 * endpoint is purged after a grace period unless it comes back.
 */
import { Conflict, Forbidden, NotFound } from "@ztm/shared/errors";
import type { EndpointRecord, MeshService, Page, PublishedService } from "@ztm/shared/protocol";

/** Something that can deliver hub messages to an endpoint's agent. */
export interface ControlChannel {
  send(message: unknown): void;
  close(): void;
  /** The HTTP/2 session the channel runs on (tickets minted for it die with it). */
  owner: object;
  /** Serial of the certificate that session was admitted with. */
  serial: string;
}

interface Entry {
  record: EndpointRecord;
  serial: string;
  control: ControlChannel | undefined;
  purge: ReturnType<typeof setTimeout> | undefined;
  sortKey: string;
}

/** The providers of one (proto, name, user) service. */
interface ServiceGroup {
  proto: PublishedService["proto"];
  name: string;
  user: string;
  providers: Set<Entry>;
}

/** Options for `Registry`. */
export interface RegistryOptions {
  /** How long an offline endpoint stays listed. */
  purgeAfterMs: number;
}

/** The hub's endpoint registry. Single-threaded; every method is synchronous. */
export class Registry {
  #byId = new Map<string, Entry>();
  #sorted: Entry[] = [];
  #byName = new Map<string, Set<Entry>>();
  #services = new Map<string, ServiceGroup>();
  #opts: RegistryOptions;

  constructor(opts: RegistryOptions) {
    this.#opts = opts;
  }

  /** Throws `Forbidden` if `id` is registered to a user other than `user`. */
  checkOwner(id: string, user: string): void {
    const e = this.#byId.get(id);
    if (e && e.record.user !== user) {
      throw new Forbidden("endpoint_taken", `Endpoint ${id} belongs to another user`);
    }
  }

  /**
   * Marks `id` online under `control`, creating it if new. Returns the
   * previous control channel if the endpoint was already connected (the caller
   * closes it: the newest connection wins).
   */
  connect(
    id: string,
    info: {
      name: string;
      user: string;
      version: string;
      address: string;
      services: PublishedService[];
      serial: string;
    },
    control: ControlChannel,
  ): ControlChannel | undefined {
    this.checkOwner(id, info.user);
    let e = this.#byId.get(id);
    const previous = e?.control;
    if (e) {
      clearTimeout(e.purge);
      e.purge = undefined;
      this.#unindex(e);
    } else {
      e = {
        record: {
          id,
          name: "",
          user: info.user,
          online: false,
          version: "",
          address: "",
          services: [],
          since: "",
        },
        serial: info.serial,
        control: undefined,
        purge: undefined,
        sortKey: "",
      };
      this.#byId.set(id, e);
    }
    Object.assign(e.record, {
      name: info.name,
      version: info.version,
      address: info.address,
      services: info.services,
      online: true,
      since: new Date().toISOString(),
    });
    e.serial = info.serial;
    e.control = control;
    e.sortKey = `${info.name.toLowerCase()}\u0000${id}`;
    // An offline endpoint of the same user and name is this machine's earlier self (it left
    // and rejoined, or was reinstalled): drop it now instead of listing a ghost until its purge.
    for (const old of [...this.#byName.get(info.name.toLowerCase()) ?? []]) {
      if (old.control || old.record.user !== info.user) continue;
      clearTimeout(old.purge);
      this.#remove(old.record.id);
    }
    this.#index(e);
    return previous;
  }

  /** Marks `id` offline if `control` is still its channel; schedules its purge. */
  disconnect(id: string, control: ControlChannel): boolean {
    const e = this.#byId.get(id);
    if (!e || e.control !== control) return false;
    e.control = undefined;
    e.record.online = false;
    e.record.since = new Date().toISOString();
    e.purge = setTimeout(() => this.#remove(id), this.#opts.purgeAfterMs);
    return true;
  }

  /** Replaces the services `id` publishes. */
  setServices(id: string, services: PublishedService[]): void {
    const e = this.#byId.get(id);
    if (!e) return;
    this.#unindexServices(e);
    e.record.services = services;
    this.#indexServices(e);
  }

  /** The control channel of an online endpoint. */
  control(id: string): ControlChannel | undefined {
    return this.#byId.get(id)?.control;
  }

  /** Control channels of every online endpoint. */
  *controls(): Generator<ControlChannel> {
    for (const e of this.#byId.values()) if (e.control) yield e.control;
  }

  /** One endpoint by id, or by a name that is unique. Throws `NotFound`/`Conflict`. */
  get(idOrName: string): EndpointRecord {
    const byId = this.#byId.get(idOrName);
    if (byId) return { ...byId.record };
    const matches = [...this.#byName.get(idOrName.toLowerCase()) ?? []];
    if (matches.length === 1) return { ...matches[0].record };
    if (matches.length > 1) {
      throw new Conflict(
        "ambiguous_endpoint",
        `Several endpoints are named "${idOrName}"; use an id`,
      );
    }
    throw new NotFound("unknown_endpoint", `Unknown endpoint "${idOrName}"`);
  }

  /** A page of endpoints sorted by name; `q` matches name, id or user (case-insensitive substring). */
  page(query: { offset: number; limit: number; q?: string }): Page<EndpointRecord> {
    const { offset, limit } = query;
    if (!query.q) {
      return {
        items: this.#sorted.slice(offset, offset + limit).map((e) => ({ ...e.record })),
        total: this.#sorted.length,
        offset,
        limit,
      };
    }
    const q = query.q.toLowerCase();
    const hits = this.#sorted.filter((e) =>
      e.record.name.toLowerCase().includes(q) || e.record.id.toLowerCase().includes(q) ||
      e.record.user.toLowerCase().includes(q)
    );
    return {
      items: hits.slice(offset, offset + limit).map((e) => ({ ...e.record })),
      total: hits.length,
      offset,
      limit,
    };
  }

  /** Mesh-wide services, one row per (proto, name, user), with providers sorted by endpoint name. */
  services(query: { offset: number; limit: number; q?: string }): Page<MeshService> {
    const q = query.q?.toLowerCase();
    const groups = [...this.#services.values()]
      .filter((g) => !q || g.name.toLowerCase().includes(q))
      .sort((a, b) =>
        a.name.localeCompare(b.name) || a.user.localeCompare(b.user) ||
        a.proto.localeCompare(b.proto)
      );
    const items = groups.slice(query.offset, query.offset + query.limit).map((g) => ({
      proto: g.proto,
      name: g.name,
      user: g.user,
      providers: [...g.providers]
        .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0))
        .flatMap((e) =>
          e.record.services
            .filter((s) => s.proto === g.proto && s.name === g.name)
            .map((s) => ({
              endpoint: e.record.id,
              name: e.record.name,
              online: e.record.online,
              users: s.users,
            }))
        ),
    }));
    return { items, total: groups.length, ...query };
  }

  /** Counts for `/api/status`. */
  counts(): { endpoints: number; online: number } {
    let online = 0;
    for (const e of this.#sorted) if (e.record.online) online++;
    return { endpoints: this.#sorted.length, online };
  }

  /** Stops purge timers. */
  close(): void {
    for (const e of this.#byId.values()) clearTimeout(e.purge);
  }

  #remove(id: string): void {
    const e = this.#byId.get(id);
    if (!e || e.control) return;
    this.#unindex(e);
    this.#byId.delete(id);
  }

  #position(key: string): number {
    let lo = 0, hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#sorted[mid].sortKey < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Adds `e` to the sorted list, the name index and the service index. */
  #index(e: Entry): void {
    this.#sorted.splice(this.#position(e.sortKey), 0, e);
    const name = e.record.name.toLowerCase();
    let named = this.#byName.get(name);
    if (!named) this.#byName.set(name, named = new Set());
    named.add(e);
    this.#indexServices(e);
  }

  /** Takes `e` out of what `#index` put it in. */
  #unindex(e: Entry): void {
    const i = this.#position(e.sortKey);
    if (this.#sorted[i] === e) this.#sorted.splice(i, 1);
    const name = e.record.name.toLowerCase();
    const named = this.#byName.get(name);
    named?.delete(e);
    if (named?.size === 0) this.#byName.delete(name);
    this.#unindexServices(e);
  }

  #indexServices(e: Entry): void {
    for (const s of e.record.services) {
      const key = serviceKey(s.proto, s.name, e.record.user);
      let g = this.#services.get(key);
      if (!g) {
        g = { proto: s.proto, name: s.name, user: e.record.user, providers: new Set() };
        this.#services.set(key, g);
      }
      g.providers.add(e);
    }
  }

  #unindexServices(e: Entry): void {
    for (const s of e.record.services) {
      const key = serviceKey(s.proto, s.name, e.record.user);
      const g = this.#services.get(key);
      g?.providers.delete(e);
      if (g?.providers.size === 0) this.#services.delete(key);
    }
  }
}

function serviceKey(proto: string, name: string, user: string): string {
  return `${proto}/${name}/${user}`;
}
