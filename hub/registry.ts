/**
 * Endpoints and their services, in hub memory only (agents re-register after
 * a hub restart).
 *
 * An endpoint id is derived from its key (`@ztm/shared/endpoint_id`; the
 * server checks that before `connect`), and names never take the id form, so
 * `get` looks up an id-shaped value by id and anything else by name. Each user
 * may hold at most `maxEndpointsPerUser` listed endpoints (offline ones
 * count until purged).
 *
 * Every query costs O(page + log n): endpoints are kept in an array sorted by
 * (lower-case name, id) and service rows in one sorted by (lower-case name,
 * user, proto), each row with its providers sorted by endpoint; a page is a
 * binary search and a slice, and a search (`q`) is a name prefix, found as a
 * range by two binary searches. Endpoints are also indexed by id and by
 * lower-case name (O(1) lookups). Updates cost a binary search and an array
 * splice. An offline endpoint is purged after a grace period unless it comes
 * back.
 */
import {
  ENDPOINT_ID_PATTERN,
  type EndpointRecord,
  type MeshService,
  type Page,
  type PublishedService,
} from "@ztm/shared/protocol";
import { hubError } from "./errors.ts";

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

/** One provider of a service row: the endpoint and the service as it publishes it. */
interface Provider {
  entry: Entry;
  service: PublishedService;
}

/** The providers of one (proto, name, user) service, sorted by endpoint. */
interface ServiceGroup {
  proto: PublishedService["proto"];
  name: string;
  user: string;
  sortKey: string;
  providers: Provider[];
}

/** Options for `Registry`. */
export interface RegistryOptions {
  /** How long an offline endpoint stays listed. */
  purgeAfterMs: number;
  /** Most endpoints one user may have listed (online or not yet purged); default unlimited. */
  maxEndpointsPerUser?: number;
}

/** Index in `list` (sorted by `sortKey`) of the first item whose key is not below `key`. */
function lowerBound(list: readonly { sortKey: string }[], key: string): number {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].sortKey < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Positions in `list` of the items whose key starts with `prefix` (keys are lower-case). */
function prefixRange(list: readonly { sortKey: string }[], prefix: string): [number, number] {
  return [lowerBound(list, prefix), lowerBound(list, prefix + "\uffff")];
}

/** The hub's endpoint registry. Single-threaded; every method is synchronous. */
export class Registry {
  #byId = new Map<string, Entry>();
  #sorted: Entry[] = [];
  #byName = new Map<string, Set<Entry>>();
  #services = new Map<string, ServiceGroup>();
  #sortedServices: ServiceGroup[] = [];
  #perUser = new Map<string, number>();
  #online = 0;
  #opts: RegistryOptions;

  constructor(opts: RegistryOptions) {
    this.#opts = opts;
  }

  /**
   * Throws `Forbidden` if `id` is registered to a user other than `user`, and
   * `TooManyRequests` (`too_many_endpoints`) if `id` is new and `user` already
   * has `maxEndpointsPerUser` endpoints.
   */
  checkOwner(id: string, user: string): void {
    const e = this.#byId.get(id);
    if (e && e.record.user !== user) {
      throw hubError("endpoint_taken", `Endpoint ${id} belongs to another user`);
    }
    const max = this.#opts.maxEndpointsPerUser ?? Infinity;
    if (!e && (this.#perUser.get(user) ?? 0) >= max) {
      throw hubError(
        "too_many_endpoints",
        `User "${user}" already has ${max} endpoints on this hub (online or offline)`,
      );
    }
  }

  /** How many endpoints `user` has listed. */
  endpointsOf(user: string): number {
    return this.#perUser.get(user) ?? 0;
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
      this.#perUser.set(info.user, (this.#perUser.get(info.user) ?? 0) + 1);
    }
    if (!e.control) this.#online++;
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
    this.#online--;
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

  /** One endpoint by id (an id-shaped value), or by a name that is unique. Throws `NotFound`/`Conflict`. */
  get(idOrName: string): EndpointRecord {
    if (ENDPOINT_ID_PATTERN.test(idOrName)) {
      const byId = this.#byId.get(idOrName);
      if (byId) return { ...byId.record };
      throw hubError("unknown_endpoint", `Unknown endpoint "${idOrName}"`);
    }
    const matches = [...this.#byName.get(idOrName.toLowerCase()) ?? []];
    if (matches.length === 1) return { ...matches[0].record };
    if (matches.length > 1) {
      throw hubError(
        "ambiguous_endpoint",
        `Several endpoints are named "${idOrName}"; use an id`,
      );
    }
    throw hubError("unknown_endpoint", `Unknown endpoint "${idOrName}"`);
  }

  /**
   * A page of endpoints sorted by name; `q` is an endpoint id, or the start
   * of names (case-insensitive). O(page + log n).
   */
  page(query: { offset: number; limit: number; q?: string }): Page<EndpointRecord> {
    const { offset, limit } = query;
    let lo = 0, hi = this.#sorted.length;
    if (query.q) {
      const byId = ENDPOINT_ID_PATTERN.test(query.q) ? this.#byId.get(query.q) : undefined;
      if (byId) {
        return { items: offset === 0 ? [{ ...byId.record }] : [], total: 1, offset, limit };
      }
      [lo, hi] = prefixRange(this.#sorted, query.q.toLowerCase());
    }
    return {
      items: this.#sorted.slice(Math.min(hi, lo + offset), Math.min(hi, lo + offset + limit))
        .map((e) => ({ ...e.record })),
      total: hi - lo,
      offset,
      limit,
    };
  }

  /**
   * Mesh-wide services, one row per (proto, name, user), sorted by name, user
   * and proto, with providers sorted by endpoint name; `q` is the start of
   * service names (case-insensitive). O(page + log n), each row costing its
   * providers.
   */
  services(query: { offset: number; limit: number; q?: string }): Page<MeshService> {
    const list = this.#sortedServices;
    const [lo, hi] = query.q ? prefixRange(list, query.q.toLowerCase()) : [0, list.length];
    const from = Math.min(hi, lo + query.offset);
    const items = list.slice(from, Math.min(hi, from + query.limit)).map((g) => ({
      proto: g.proto,
      name: g.name,
      user: g.user,
      providers: g.providers.map(({ entry, service }) => ({
        endpoint: entry.record.id,
        name: entry.record.name,
        online: entry.record.online,
        users: service.users,
      })),
    }));
    return { items, total: hi - lo, ...query };
  }

  /** Counts for `/api/status`. */
  counts(): { endpoints: number; online: number } {
    return { endpoints: this.#sorted.length, online: this.#online };
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
    const left = (this.#perUser.get(e.record.user) ?? 1) - 1;
    if (left > 0) this.#perUser.set(e.record.user, left);
    else this.#perUser.delete(e.record.user);
  }

  #position(key: string): number {
    return lowerBound(this.#sorted, key);
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
    for (const service of e.record.services) {
      const key = serviceKey(service.proto, service.name, e.record.user);
      let g = this.#services.get(key);
      if (!g) {
        g = {
          proto: service.proto,
          name: service.name,
          user: e.record.user,
          sortKey: `${service.name.toLowerCase()}\u0000${e.record.user}\u0000${service.proto}`,
          providers: [],
        };
        this.#services.set(key, g);
        this.#sortedServices.splice(lowerBound(this.#sortedServices, g.sortKey), 0, g);
      }
      const at = providerPosition(g.providers, e.sortKey);
      if (g.providers[at]?.entry !== e) g.providers.splice(at, 0, { entry: e, service });
    }
  }

  #unindexServices(e: Entry): void {
    for (const s of e.record.services) {
      const key = serviceKey(s.proto, s.name, e.record.user);
      const g = this.#services.get(key);
      if (!g) continue;
      const at = providerPosition(g.providers, e.sortKey);
      if (g.providers[at]?.entry === e) g.providers.splice(at, 1);
      if (g.providers.length > 0) continue;
      this.#services.delete(key);
      const i = lowerBound(this.#sortedServices, g.sortKey);
      if (this.#sortedServices[i] === g) this.#sortedServices.splice(i, 1);
    }
  }
}

/** Index in `providers` (sorted by endpoint sort key) of the first not below `key`. */
function providerPosition(providers: readonly Provider[], key: string): number {
  let lo = 0, hi = providers.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (providers[mid].entry.sortKey < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function serviceKey(proto: string, name: string, user: string): string {
  return `${proto}/${name}/${user}`;
}
