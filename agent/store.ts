/**
 * The agent's durable state in one SQLite file (`node:sqlite`, WAL,
 * `synchronous=FULL`): joined meshes with their CA, certificate and key,
 * the services this endpoint provides, and its port mappings.
 *
 * Every write is one transaction, committed before the method returns, so an
 * acknowledged change survives a crash. The file and its `-wal`/`-shm`
 * companions are `0600` (they hold private keys). Validation of names and
 * addresses is the API's job; the store enforces only identity: one mesh per
 * name, one service per `mesh/proto/name`, and one listener per local
 * `ip/proto/port` across all meshes.
 *
 * @example
 * ```ts
 * const store = AgentStore.open("/home/me/ztm.db");
 * for (const mesh of store.listMeshes()) startMesh(mesh, { services: store.services(mesh.name), ports: store.ports(mesh.name) });
 * ```
 */
import type { DatabaseSync } from "node:sqlite";
import { openDatabase, transaction } from "@ztm/shared/sqlite";
import type { ServiceProto } from "@ztm/shared/protocol";
import {
  ENDPOINT_SEED_PATTERN,
  endpointIdOfCertificate,
  newEndpointSeed,
} from "@ztm/shared/endpoint_id";
import { DEFAULT_POLICY, type Policy } from "./policy.ts";
import type { ProxyConfig } from "./proxy/proxies.ts";
import type { ExitRule } from "./proxy/exit_policy.ts";
import type { LocalService, MeshConfig, PortMapping } from "./runtime.ts";
import { agentError, type AuditEntry } from "@ztm/shared/agent_api";
// Defined by the API contract; re-exported for this package's modules.
export type { AuditEntry };

/** Migrations: `MIGRATIONS[v]` takes schema `v` to `v + 1`; the length is the version this code writes. */
const MIGRATIONS: string[] = [
  // 0 → 1
  `CREATE TABLE meshes (
     name TEXT PRIMARY KEY,
     ca TEXT NOT NULL,
     certificate TEXT NOT NULL,
     private_key TEXT NOT NULL,
     bootstraps TEXT NOT NULL,
     endpoint_id TEXT NOT NULL,
     endpoint_name TEXT NOT NULL,
     joined_at TEXT NOT NULL
   );
   CREATE TABLE services (
     mesh TEXT NOT NULL REFERENCES meshes (name) ON DELETE CASCADE,
     proto TEXT NOT NULL,
     name TEXT NOT NULL,
     host TEXT NOT NULL,
     port INTEGER NOT NULL,
     users TEXT NOT NULL,
     PRIMARY KEY (mesh, proto, name)
   );
   CREATE TABLE ports (
     mesh TEXT NOT NULL REFERENCES meshes (name) ON DELETE CASCADE,
     ip TEXT NOT NULL,
     proto TEXT NOT NULL,
     port INTEGER NOT NULL,
     target TEXT NOT NULL,
     PRIMARY KEY (ip, proto, port)
   );
   CREATE INDEX ports_by_mesh ON ports (mesh);`,
  // 1 → 2: local policy for remote management, and the audit log
  `CREATE TABLE policies (
     mesh TEXT PRIMARY KEY REFERENCES meshes (name) ON DELETE CASCADE,
     policy TEXT NOT NULL
   );
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     mesh TEXT NOT NULL REFERENCES meshes (name) ON DELETE CASCADE,
     time TEXT NOT NULL,
     user TEXT NOT NULL,
     via TEXT NOT NULL,
     method TEXT NOT NULL,
     path TEXT NOT NULL,
     status INTEGER NOT NULL,
     outcome TEXT NOT NULL
   );
   CREATE INDEX audit_by_mesh ON audit (mesh, id);`,
  // 2 → 3: spent nonces of signed management requests, so a restart cannot reopen a replay
  `CREATE TABLE nonces (
     nonce TEXT PRIMARY KEY,
     expires INTEGER NOT NULL
   );
   CREATE INDEX nonces_by_expiry ON nonces (expires);`,
  // 3 → 4: a service's `strict` flag (narrowing its users also closes their live connections)
  `ALTER TABLE services ADD COLUMN strict INTEGER NOT NULL DEFAULT 0;`,
  // 4 → 5: the seed of a key-bound endpoint id; '' marks an id from before them (see `migrateEndpointIds`)
  `ALTER TABLE meshes ADD COLUMN endpoint_seed TEXT NOT NULL DEFAULT '';`,
  // 5 → 6: what an audit entry acted on, in words (a service's target, a mapping's service)
  `ALTER TABLE audit ADD COLUMN detail TEXT NOT NULL DEFAULT '';`,
  // 6 → 7: the mesh's proxy (agent/proxy), when it is on: its config as JSON (`{listen}`)
  `CREATE TABLE proxies (
     mesh TEXT PRIMARY KEY REFERENCES meshes (name) ON DELETE CASCADE,
     config TEXT NOT NULL
   );`,
  // 7 → 8: the endpoint's exit (agent/proxy/exit_policy.ts), when it offers one: its rules as JSON
  `CREATE TABLE exits (
     mesh TEXT PRIMARY KEY REFERENCES meshes (name) ON DELETE CASCADE,
     rules TEXT NOT NULL
   );`,
  // 8 → 9: hubs learnt from hub lists (agent/hubs.ts), one address list per hub, as JSON
  `ALTER TABLE meshes ADD COLUMN listed_hubs TEXT NOT NULL DEFAULT '[]';`,
];

/** Audit entries kept per mesh; older ones are dropped. */
export const MAX_AUDIT_ENTRIES = 10_000;

/** A joined mesh as stored: its config plus when it was joined. */
export interface MeshRecord extends MeshConfig {
  /** ISO time of the join. */
  joinedAt: string;
  /** Hubs learnt from hub lists (one address list per hub), dialled besides the bootstraps. */
  listedHubs: string[][];
}

type Row = Record<string, unknown>;

function toMesh(row: Row): MeshRecord {
  return {
    name: row.name as string,
    ca: row.ca as string,
    certificate: row.certificate as string,
    privateKey: row.private_key as string,
    bootstraps: JSON.parse(row.bootstraps as string) as string[],
    listedHubs: JSON.parse((row.listed_hubs as string | undefined) ?? "[]") as string[][],
    endpointId: row.endpoint_id as string,
    endpointSeed: row.endpoint_seed as string,
    endpointName: row.endpoint_name as string,
    joinedAt: row.joined_at as string,
  };
}

function toService(row: Row): LocalService {
  return {
    proto: row.proto as ServiceProto,
    name: row.name as string,
    host: row.host as string,
    port: row.port as number,
    users: JSON.parse(row.users as string) as string[],
    strict: row.strict === 1,
  };
}

function toPort(row: Row): PortMapping {
  return {
    ip: row.ip as string,
    proto: row.proto as ServiceProto,
    port: row.port as number,
    target: JSON.parse(row.target as string) as PortMapping["target"],
  };
}

/** `ip/proto/port`, the way mappings are named in messages. */
function portKey(ip: string, proto: string, port: number): string {
  return `${ip}/${proto}/${port}`;
}

/**
 * The agent database. Synchronous; callers in one process may interleave
 * freely because every write is a single transaction. One agent owns one file.
 */
export class AgentStore {
  #db: DatabaseSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating `0600` if missing) and migrates the database at `path`.
   * Throws if the file was written by a newer schema.
   */
  static open(path: string): AgentStore {
    return new AgentStore(openDatabase(path, MIGRATIONS));
  }

  #transaction<T>(fn: () => T): T {
    return transaction(this.#db, fn);
  }

  #requireMesh(name: string): void {
    if (!this.#db.prepare("SELECT 1 FROM meshes WHERE name = ?").get(name)) {
      throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
    }
  }

  /** Every joined mesh, by name. */
  listMeshes(): MeshRecord[] {
    return (this.#db.prepare("SELECT * FROM meshes ORDER BY name").all() as Row[]).map(toMesh);
  }

  /** One joined mesh, or undefined. */
  mesh(name: string): MeshRecord | undefined {
    const row = this.#db.prepare("SELECT * FROM meshes WHERE name = ?").get(name) as
      | Row
      | undefined;
    return row ? toMesh(row) : undefined;
  }

  /** Stores a newly joined mesh. Throws `Conflict` (`mesh_exists`) if `config.name` is joined. */
  addMesh(config: MeshConfig, joinedAt: Date = new Date()): MeshRecord {
    return this.#transaction(() => {
      if (this.mesh(config.name)) {
        throw agentError("mesh_exists", `Mesh "${config.name}" is already joined`);
      }
      this.#db.prepare(
        `INSERT INTO meshes
           (name, ca, certificate, private_key, bootstraps, endpoint_id, endpoint_name, joined_at,
            endpoint_seed)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        config.name,
        config.ca,
        config.certificate,
        config.privateKey,
        JSON.stringify(config.bootstraps),
        config.endpointId,
        config.endpointName,
        joinedAt.toISOString(),
        config.endpointSeed,
      );
      return {
        ...config,
        bootstraps: [...config.bootstraps],
        joinedAt: joinedAt.toISOString(),
        listedHubs: [],
      };
    });
  }

  /** Keeps the hubs mesh `name` learnt from hub lists (one address list per hub). */
  setListedHubs(name: string, listed: string[][]): void {
    this.#db.prepare("UPDATE meshes SET listed_hubs = ? WHERE name = ?")
      .run(JSON.stringify(listed), name);
  }

  /** Replaces the hub addresses of `name`. Throws `NotFound` (`unknown_mesh`). */
  setBootstraps(name: string, bootstraps: string[]): MeshRecord {
    const { changes } = this.#db.prepare("UPDATE meshes SET bootstraps = ? WHERE name = ?")
      .run(JSON.stringify(bootstraps), name);
    if (changes === 0) throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
    return this.mesh(name)!;
  }

  /**
   * Replaces the certificate of `name` with its renewal (same key: the endpoint id stays).
   * Throws `NotFound` (`unknown_mesh`).
   */
  setCertificate(name: string, certificate: string): void {
    const { changes } = this.#db.prepare("UPDATE meshes SET certificate = ? WHERE name = ?")
      .run(certificate, name);
    if (changes === 0) throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
  }

  /**
   * Gives every mesh joined before key-bound endpoint ids (no seed) its new
   * id: the old id becomes the seed, so the new one is derived from it and the
   * certificate's key (`@ztm/shared/endpoint_id`). Returns what changed.
   */
  migrateEndpointIds(): { mesh: string; from: string; to: string }[] {
    return this.#transaction(() => {
      const rows = this.#db.prepare("SELECT * FROM meshes WHERE endpoint_seed = ''").all() as Row[];
      return rows.map((row) => {
        const from = row.endpoint_id as string;
        const seed = ENDPOINT_SEED_PATTERN.test(from) ? from : newEndpointSeed();
        const to = endpointIdOfCertificate(row.certificate as string, seed);
        this.#db.prepare("UPDATE meshes SET endpoint_id = ?, endpoint_seed = ? WHERE name = ?")
          .run(to, seed, row.name as string);
        return { mesh: row.name as string, from, to };
      });
    });
  }

  /** Forgets a mesh with its services and port mappings. Throws `NotFound` (`unknown_mesh`). */
  removeMesh(name: string): void {
    this.#transaction(() => {
      const { changes } = this.#db.prepare("DELETE FROM meshes WHERE name = ?").run(name);
      if (changes === 0) throw agentError("unknown_mesh", `Unknown mesh "${name}"`);
    });
  }

  /** The services this endpoint provides in `mesh`, by proto and name (empty for an unknown mesh). */
  services(mesh: string): LocalService[] {
    return (this.#db.prepare("SELECT * FROM services WHERE mesh = ? ORDER BY proto, name")
      .all(mesh) as Row[]).map(toService);
  }

  /**
   * Creates or replaces the service `svc.proto/svc.name` in `mesh`; returns
   * true when it was new. Throws `NotFound` (`unknown_mesh`).
   */
  putService(mesh: string, svc: LocalService): boolean {
    return this.#transaction(() => {
      this.#requireMesh(mesh);
      const existed = this.#db.prepare(
        "SELECT 1 FROM services WHERE mesh = ? AND proto = ? AND name = ?",
      ).get(mesh, svc.proto, svc.name) !== undefined;
      this.#db.prepare(
        `INSERT INTO services (mesh, proto, name, host, port, users, strict)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (mesh, proto, name) DO UPDATE
           SET host = excluded.host, port = excluded.port, users = excluded.users,
               strict = excluded.strict`,
      ).run(
        mesh,
        svc.proto,
        svc.name,
        svc.host,
        svc.port,
        JSON.stringify(svc.users),
        svc.strict ? 1 : 0,
      );
      return !existed;
    });
  }

  /** Deletes a service and returns what it was. Throws `NotFound` (`unknown_service`). */
  deleteService(mesh: string, proto: ServiceProto, name: string): LocalService {
    return this.#transaction(() => {
      const row = this.#db.prepare(
        "DELETE FROM services WHERE mesh = ? AND proto = ? AND name = ? RETURNING *",
      ).get(mesh, proto, name) as Row | undefined;
      if (!row) {
        throw agentError(
          "unknown_service",
          `Unknown service "${proto}/${name}" in mesh "${mesh}"`,
        );
      }
      return toService(row);
    });
  }

  /** The port mappings of `mesh`, by ip, proto and port (empty for an unknown mesh). */
  ports(mesh: string): PortMapping[] {
    return (this.#db.prepare("SELECT * FROM ports WHERE mesh = ? ORDER BY ip, proto, port")
      .all(mesh) as Row[]).map(toPort);
  }

  /** One port mapping of `mesh`, or undefined (also when another mesh holds that address). */
  port(mesh: string, ip: string, proto: ServiceProto, port: number): PortMapping | undefined {
    const row = this.#db.prepare(
      "SELECT * FROM ports WHERE mesh = ? AND ip = ? AND proto = ? AND port = ?",
    ).get(mesh, ip, proto, port) as Row | undefined;
    return row ? toPort(row) : undefined;
  }

  /**
   * Records a port mapping. Throws `Conflict` (`port_mapped`) if any mesh
   * already maps that `ip/proto/port`, `NotFound` (`unknown_mesh`).
   */
  addPort(mesh: string, mapping: PortMapping): void {
    this.#transaction(() => {
      this.#requireMesh(mesh);
      const holder = this.#db.prepare(
        "SELECT mesh FROM ports WHERE ip = ? AND proto = ? AND port = ?",
      ).get(mapping.ip, mapping.proto, mapping.port) as Row | undefined;
      if (holder) {
        const where = holder.mesh === mesh ? "" : ` by mesh "${holder.mesh}"`;
        throw agentError(
          "port_mapped",
          `Port ${portKey(mapping.ip, mapping.proto, mapping.port)} is already mapped${where}`,
        );
      }
      this.#db.prepare(
        "INSERT INTO ports (mesh, ip, proto, port, target) VALUES (?, ?, ?, ?, ?)",
      ).run(mesh, mapping.ip, mapping.proto, mapping.port, JSON.stringify(mapping.target));
    });
  }

  /**
   * Records the pool user a mapping made without one fixed at its first use,
   * so a restart keeps it. Changes nothing (false) unless the stored mapping
   * is still `mapping` with no user: one deleted or remade meanwhile is left alone.
   */
  fixPortUser(mesh: string, mapping: PortMapping, user: string): boolean {
    return this.#transaction(() => {
      const stored = this.port(mesh, mapping.ip, mapping.proto, mapping.port);
      if (
        !stored || stored.target.user !== undefined ||
        stored.target.service !== mapping.target.service ||
        stored.target.endpoint !== mapping.target.endpoint
      ) return false;
      this.#db.prepare(
        "UPDATE ports SET target = ? WHERE mesh = ? AND ip = ? AND proto = ? AND port = ?",
      ).run(
        JSON.stringify({ ...stored.target, user }),
        mesh,
        mapping.ip,
        mapping.proto,
        mapping.port,
      );
      return true;
    });
  }

  /** Deletes a port mapping of `mesh` and returns it. Throws `NotFound` (`unknown_port`). */
  deletePort(mesh: string, ip: string, proto: ServiceProto, port: number): PortMapping {
    return this.#transaction(() => {
      const row = this.#db.prepare(
        "DELETE FROM ports WHERE mesh = ? AND ip = ? AND proto = ? AND port = ? RETURNING *",
      ).get(mesh, ip, proto, port) as Row | undefined;
      if (!row) {
        throw agentError(
          "unknown_port",
          `Unknown port mapping "${portKey(ip, proto, port)}" in mesh "${mesh}"`,
        );
      }
      return toPort(row);
    });
  }

  /** The mesh's remote-management policy (the default until one is set). */
  policy(mesh: string): Policy {
    const row = this.#db.prepare("SELECT policy FROM policies WHERE mesh = ?").get(mesh) as
      | Row
      | undefined;
    return row ? { ...DEFAULT_POLICY, ...JSON.parse(row.policy as string) } : { ...DEFAULT_POLICY };
  }

  /** Replaces the mesh's policy. Throws `NotFound` for an unknown mesh. */
  setPolicy(mesh: string, policy: Policy): void {
    this.#transaction(() => {
      this.#requireMesh(mesh);
      this.#db.prepare(
        `INSERT INTO policies (mesh, policy) VALUES (?, ?)
         ON CONFLICT (mesh) DO UPDATE SET policy = excluded.policy`,
      ).run(mesh, JSON.stringify(policy));
    });
  }

  /** The mesh's proxy config; null while its proxy is off. */
  proxy(mesh: string): ProxyConfig | null {
    const row = this.#db.prepare("SELECT config FROM proxies WHERE mesh = ?").get(mesh) as
      | Row
      | undefined;
    return row ? JSON.parse(row.config as string) as ProxyConfig : null;
  }

  /** Stores the mesh's proxy config (on). Throws `NotFound` for an unknown mesh. */
  setProxy(mesh: string, config: ProxyConfig): void {
    this.#transaction(() => {
      this.#requireMesh(mesh);
      this.#db.prepare(
        `INSERT INTO proxies (mesh, config) VALUES (?, ?)
         ON CONFLICT (mesh) DO UPDATE SET config = excluded.config`,
      ).run(
        mesh,
        JSON.stringify({ listen: config.listen, ...(config.exit ? { exit: config.exit } : {}) }),
      );
    });
  }

  /** Forgets the mesh's proxy config (off); true if there was one. */
  removeProxy(mesh: string): boolean {
    return this.#transaction(() =>
      Number(this.#db.prepare("DELETE FROM proxies WHERE mesh = ?").run(mesh).changes) > 0
    );
  }

  /** The endpoint's exit rules in the mesh; null while it offers no exit. */
  exit(mesh: string): ExitRule[] | null {
    const row = this.#db.prepare("SELECT rules FROM exits WHERE mesh = ?").get(mesh) as
      | Row
      | undefined;
    return row ? JSON.parse(row.rules as string) as ExitRule[] : null;
  }

  /** Stores the endpoint's exit rules. Throws `NotFound` for an unknown mesh. */
  setExit(mesh: string, rules: ExitRule[]): void {
    this.#transaction(() => {
      this.#requireMesh(mesh);
      this.#db.prepare(
        `INSERT INTO exits (mesh, rules) VALUES (?, ?)
         ON CONFLICT (mesh) DO UPDATE SET rules = excluded.rules`,
      ).run(mesh, JSON.stringify(rules));
    });
  }

  /** Forgets the endpoint's exit; true if there was one. */
  removeExit(mesh: string): boolean {
    return this.#transaction(() =>
      Number(this.#db.prepare("DELETE FROM exits WHERE mesh = ?").run(mesh).changes) > 0
    );
  }

  /** Appends an audit entry, dropping the oldest beyond `MAX_AUDIT_ENTRIES`. */
  addAudit(
    mesh: string,
    entry: Omit<AuditEntry, "id" | "time" | "detail"> & { detail?: string },
  ): void {
    this.#transaction(() => {
      if (!this.#db.prepare("SELECT 1 FROM meshes WHERE name = ?").get(mesh)) return;
      this.#db.prepare(
        `INSERT INTO audit (mesh, time, user, via, method, path, status, outcome, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        mesh,
        new Date().toISOString(),
        entry.user,
        entry.via,
        entry.method,
        entry.path,
        entry.status,
        entry.outcome.slice(0, 500),
        (entry.detail ?? "").slice(0, 500),
      );
      this.#db.prepare(
        `DELETE FROM audit WHERE mesh = ? AND id <= (
           SELECT id FROM audit WHERE mesh = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
      ).run(mesh, mesh, MAX_AUDIT_ENTRIES);
    });
  }

  /**
   * Records a spent nonce (durably, before the request it came with is
   * applied); false if it was spent before. Expired nonces are dropped.
   */
  spendNonce(nonce: string, expires: number, now = Date.now()): boolean {
    return this.#transaction(() => {
      this.#db.prepare("DELETE FROM nonces WHERE expires < ?").run(now);
      const r = this.#db.prepare("INSERT OR IGNORE INTO nonces (nonce, expires) VALUES (?, ?)").run(
        nonce,
        expires,
      );
      return Number(r.changes) === 1;
    });
  }

  /** A page of the mesh's audit log, newest first. */
  audit(mesh: string, offset: number, limit: number): { items: AuditEntry[]; total: number } {
    const total =
      (this.#db.prepare("SELECT COUNT(*) AS n FROM audit WHERE mesh = ?").get(mesh) as Row)
        .n as number;
    const rows = this.#db.prepare(
      `SELECT id, time, user, via, method, path, status, outcome, detail FROM audit
       WHERE mesh = ? ORDER BY id DESC LIMIT ? OFFSET ?`,
    ).all(mesh, limit, offset) as Row[];
    return { items: rows as unknown as AuditEntry[], total };
  }

  /** Closes the database; no method may be called afterwards. */
  close(): void {
    this.#db.close();
  }
}
