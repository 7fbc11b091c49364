/**
 * One joined mesh, running: the hub link, the provider side of tunnels, and
 * the port mappings' listeners. Implements `MeshRuntime` for the local API,
 * which hands it plain data after committing each change.
 */
import { agentError } from "@ztm/shared/agent_api";
import { errorBody } from "@ztm/shared/errors";
import type { Logger } from "@ztm/shared/log";
import {
  type EndpointRecord,
  HUB_PATHS,
  type HubMessage,
  type MeshService,
  type Page,
  type PublishedService,
} from "@ztm/shared/protocol";
import { EXIT_SERVICE } from "@ztm/shared/peer_protocol";
import type { SignedRequest } from "@ztm/shared/signed_request";
import { VERSION } from "@ztm/shared/version";
import { type HubFailure, type HubLink, userOf } from "./hub_link.ts";
import { HubSet } from "./hubs.ts";
import { PairDialer } from "./peer/dialer.ts";
import { Signer } from "./peer/identity.ts";
import { PairListener } from "./peer/listener.ts";
import { ExitPolicy, type ExitRule } from "./proxy/exit_policy.ts";
import { PortMap, retryable } from "./port_map.ts";
import type { ProxyTunnels } from "./proxy/mesh_dialer.ts";
import { Provider } from "./provider.ts";
import { TunnelStates } from "./tunnel_state.ts";
import type {
  LocalService,
  ManageHandler,
  MeshConfig,
  MeshRuntime,
  MeshStatus,
  PageQuery,
  PortMapping,
} from "./runtime.ts";

function published(services: LocalService[]): PublishedService[] {
  return services.map(({ proto, name, users }) => ({ proto, name, users }));
}

function pageQuery(path: string, q: PageQuery): string {
  const params = new URLSearchParams({ offset: String(q.offset), limit: String(q.limit) });
  if (q.q) params.set("q", q.q);
  return `${path}?${params}`;
}

function portKey(m: PortMapping): string {
  return `${m.ip}/${m.proto}/${m.port}`;
}

/** What a mesh keeps beside its record, and whom it tells of what it fixed. */
export interface MeshOptions {
  /** Where the newest verified CRL is kept, so a restart does not forget a revocation. */
  crlFile?: string;
  /** Told the pool user a port mapping without one fixed at first use (to store it). */
  poolUserFixed?: (mapping: PortMapping, user: string) => void;
  /** UDP mappings: a flow's idle timeout in ms (`--udp-idle`). */
  udpIdleMs?: number;
  /** UDP mappings: most flows per mapping (`--udp-flows`). */
  udpFlows?: number;
  /** Hubs learnt from hub lists before (`hubs.ts`), dialled besides the bootstraps. */
  listedHubs?: string[][];
  /** Told the hubs learnt from hub lists each time they change (to store them). */
  onListedHubs?: (listed: string[][]) => void;
}

/** Starts a mesh runtime; the hub link connects in the background. */
export async function startMesh(
  config: MeshConfig,
  state: { services: LocalService[]; ports: PortMapping[]; exit?: ExitRule[] | null },
  log: Logger,
  opts: MeshOptions = {},
): Promise<MeshRuntime> {
  const mesh = new Mesh(config, log, opts);
  if (state.exit) {
    try {
      mesh.setExit(state.exit);
    } catch (err) {
      log.warn("exit not offered", { mesh: config.name, err: String(err) });
    }
  }
  mesh.setServices(state.services);
  for (const port of state.ports) {
    try {
      await mesh.openPort(port);
    } catch (err) {
      // A stored mapping whose port is taken now stays stored; say so and go on.
      log.warn("port mapping not reopened", {
        mesh: config.name,
        addr: `${port.ip}:${port.port}`,
        err: String(err),
      });
    }
  }
  mesh.start();
  return mesh;
}

/** The running mesh. */
export class Mesh implements MeshRuntime {
  readonly name: string;
  #config: MeshConfig;
  #user: string;
  #services: LocalService[] = [];
  #exitRules: ExitRule[] | null = null;
  #link: HubSet;
  #provider: Provider;
  #ports = new Map<string, PortMap>();
  #log: Logger;
  #manageHandler: ManageHandler | undefined;
  #poolUserFixed: ((mapping: PortMapping, user: string) => void) | undefined;
  #udpIdleMs: number | undefined;
  #udpFlows: number | undefined;
  #states = new TunnelStates();
  #signer: Signer;
  #dialer: PairDialer;
  #pairs: PairListener;

  constructor(config: MeshConfig, log: Logger, opts: MeshOptions = {}) {
    this.name = config.name;
    this.#poolUserFixed = opts.poolUserFixed;
    this.#udpIdleMs = opts.udpIdleMs;
    this.#udpFlows = opts.udpFlows;
    this.#config = config;
    this.#log = log;
    this.#user = userOf(config.certificate);
    this.#signer = new Signer({
      caPem: config.ca,
      certPem: config.certificate,
      keyPem: config.privateKey,
      user: this.#user,
      endpoint: config.endpointId,
    });
    this.#link = new HubSet({
      config,
      log,
      crlFile: opts.crlFile,
      listed: opts.listedHubs,
      onListed: opts.onListedHubs,
      hello: () => ({
        type: "hello",
        name: config.endpointName,
        seed: config.endpointSeed,
        version: VERSION,
        services: published(this.#offered()),
      }),
      onOpen: (link, msg) => this.#onPairRequest(link, msg),
      onCrl: (revoked) => {
        this.#dialer.revoke(revoked);
        this.#pairs.revoke(revoked);
      },
      onWelcome: (link, hub) => {
        if (!hub.dataPort) {
          log.warn("hub has no data port: tunnels are unavailable", {
            mesh: config.name,
            peer: link.state().hub ?? undefined,
          });
        }
        // Services changed between our hello and the hub's welcome would otherwise be lost.
        link.send({ type: "services", services: published(this.#offered()) });
      },
      // Splices are bound to the lost session: tunnels on that hub's pairs end now.
      onLost: (link) => {
        const data = this.#link.data(link);
        if (!data) return;
        this.#dialer.dropHub(data);
        this.#pairs.dropHub(data);
      },
      onManage: (msg) => {
        if (!this.#manageHandler) {
          const { status, body } = errorBody(agentError("not_ready", "The endpoint is starting"));
          return Promise.resolve({ status, body: JSON.stringify(body) });
        }
        return this.#manageHandler(msg.request, msg.from);
      },
    });
    this.#provider = new Provider({ owner: this.#user, log, mesh: config.name });
    const revoked = () => this.#link.revoked();
    this.#dialer = new PairDialer({ signer: this.#signer, log, mesh: config.name, revoked });
    this.#pairs = new PairListener({
      signer: this.#signer,
      log,
      mesh: config.name,
      revoked,
      serve: (open, caller) => this.#provider.serve(open, caller),
    });
    this.#provider.states = this.#states;
  }

  /** Puts a renewed certificate (same key, `renew.ts`) to use for pairs: hellos and listener. */
  certificateRenewed(certPem: string): void {
    this.#signer.setCertificate(certPem);
    this.#pairs.reload();
    this.#log.info("end-to-end certificate reloaded", { mesh: this.name });
  }

  start(): void {
    this.#pairs.start();
    this.#link.start();
  }

  /**
   * A pair request from the hub: the cheap pre-check on what it claims, and
   * only then an `accept` and the data-port dial (the caller's certificate is
   * checked inside the pair before any byte reaches a target).
   */
  #onPairRequest(link: HubLink, msg: Extract<HubMessage, { type: "open" }>): void {
    const sid = String(msg.sid);
    const refuse = (status: number, code: string, message: string) =>
      link.send({ type: "refuse", sid, status, code, message });
    const data = this.#link.data(link);
    if (!data || typeof msg.ticket !== "string") {
      return void refuse(503, "no_data_port", "The provider has no data port to reach the hub on");
    }
    if (!this.#signer.canServe()) {
      this.#log.warn("tunnel refused: certificate predates end-to-end tunnels", {
        mesh: this.name,
      });
      return void refuse(
        503,
        "certificate_outdated",
        "The provider's certificate predates protocol 2 (no serverAuth peer name); reissue it",
      );
    }
    try {
      this.#provider.precheck(msg.service, msg.from);
    } catch (err) {
      const { status, body } = errorBody(err);
      return void refuse(status, body.error.code, body.error.message);
    }
    link.send({ type: "accept", sid });
    this.#pairs.attach(data, msg.ticket, sid);
  }

  /** Resolves once the hub link is up. */
  waitConnected(timeoutMs: number): Promise<void> {
    return this.#link.waitConnected(timeoutMs);
  }

  /** The first session's outcome: null once connected, else the failed dials (see HubLink). */
  firstSession(timeoutMs: number): Promise<HubFailure[] | null> {
    return this.#link.firstSession(timeoutMs);
  }

  status(): MeshStatus {
    const s = this.#link.state();
    return {
      name: this.name,
      endpoint: { id: this.#config.endpointId, name: this.#config.endpointName },
      user: this.#user,
      connected: s.connected,
      hub: s.hub,
      lastError: s.lastError,
      since: s.since,
      crlAlarm: s.crlAlarm,
      hubs: this.#link.hubs(),
    };
  }

  endpoints(query: PageQuery): Promise<Page<EndpointRecord>> {
    return this.#link.endpoints(pageQuery(HUB_PATHS.endpoints, query));
  }

  endpoint(idOrName: string): Promise<EndpointRecord> {
    return this.#link.endpoint(HUB_PATHS.endpoint(idOrName));
  }

  services(query: PageQuery): Promise<Page<MeshService>> {
    return this.#link.services(pageQuery(HUB_PATHS.services, query));
  }

  setServices(services: LocalService[]): void {
    this.#services = services;
    const offered = this.#offered();
    this.#provider.setServices(offered);
    this.#states.keepServices(offered);
    this.#link.send({ type: "services", services: published(offered) });
  }

  /**
   * Sets (or, with null, removes) this endpoint's exit: `rules` say which
   * users may reach which destinations through it (`proxy/exit_policy.ts`).
   * It is offered as the service `tcp/exit`, in place of a service of that
   * name. Throws `BadRequest` for a rule that does not parse.
   */
  setExit(rules: ExitRule[] | null): void {
    this.#exitRules = rules;
    this.#provider.setExit(rules ? new ExitPolicy(rules) : undefined);
    this.setServices(this.#services);
  }

  /** The services offered: the stored ones, and the exit when there is one. */
  #offered(): LocalService[] {
    const rules = this.#exitRules;
    if (!rules) return this.#services;
    const users = new Set(rules.flatMap((r) => r.users ?? []));
    const exit: LocalService = {
      proto: "tcp",
      name: EXIT_SERVICE,
      host: "",
      port: 0,
      users: users.has("*") ? ["*"] : [...users],
      strict: false,
    };
    return [...this.#services.filter((x) => !(x.proto === "tcp" && x.name === EXIT_SERVICE)), exit];
  }

  async openPort(mapping: PortMapping): Promise<void> {
    const key = portKey(mapping);
    if (this.#ports.has(key)) return;
    const port = new PortMap({
      mapping,
      link: this.#link,
      dialer: this.#dialer,
      log: this.#log,
      mesh: this.name,
      userFixed: this.#poolUserFixed,
      state: this.#states.port(mapping),
      udpIdleMs: this.#udpIdleMs,
      udpFlows: this.#udpFlows,
    });
    await port.listen();
    this.#ports.set(key, port);
  }

  async closePort(mapping: PortMapping): Promise<void> {
    const key = portKey(mapping);
    const port = this.#ports.get(key);
    if (!port) {
      throw agentError("unknown_port", `No port mapping on ${mapping.ip}:${mapping.port}`);
    }
    this.#ports.delete(key);
    this.#states.dropPort(mapping);
    await port.close();
  }

  tunnelStates(): TunnelStates {
    return this.#states;
  }

  /**
   * The data path as the proxy uses it (`agent/proxy`): the hub's service
   * listing, and one tunnel to one provider, end to end through the pair
   * dialer as a port mapping opens it (the provider checks the caller).
   */
  proxyTunnels(): ProxyTunnels {
    return {
      services: async (name) => (await this.services({ offset: 0, limit: 500, q: name })).items,
      openTunnel: async (t) => {
        const open = () =>
          this.#link.tunnel(
            HUB_PATHS.tunnel(t.endpoint, t.proto, t.service),
            (ticket, data) =>
              this.#dialer.open(
                { endpoint: t.endpoint, user: t.user },
                { proto: t.proto, name: t.service, ...(t.to ? { to: t.to } : {}) },
                ticket,
                data,
              ),
          );
        // As a port mapping does: a fresh pair that broke on its way is tried once more.
        const opened = await open().catch((err) => {
          if (!retryable(err)) throw err;
          return open();
        });
        return { leg: opened.leg, release: (clean) => opened.release(clean) };
      },
    };
  }

  manage(targetId: string, request: SignedRequest): Promise<{ status: number; body: string }> {
    return this.#link.manage(HUB_PATHS.manage(targetId), JSON.stringify(request));
  }

  revoked(): Set<string> {
    return this.#link.revoked();
  }

  setManageHandler(handler: ManageHandler): void {
    this.#manageHandler = handler;
  }

  /** A request to the hub on the current session (certificate renewal, `renew.ts`). */
  hubRequest(
    method: string,
    path: string,
    body?: string,
  ): Promise<{ status: number; body: string }> {
    const link = this.#link.preferred();
    if (!link) throw agentError("hub_unreachable", "Not connected to any hub");
    return link.requestRaw(method, path, body);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#ports.values()].map((p) => p.close()));
    this.#ports.clear();
    this.#provider.close();
    this.#dialer.close();
    this.#pairs.close();
    await this.#link.close();
  }
}
