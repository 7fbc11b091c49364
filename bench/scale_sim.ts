/**
 * One simulator process of the scale bench: `--count` endpoints, each with a
 * real mutual-TLS HTTP/2 session to every hub of `--ports` (one hub by
 * default; several as an agent with several bootstraps holds one per hub,
 * `agent/hubs.ts`), each session behaving on the wire as a real agent's hub
 * link (`agent/hub_link.ts`) does:
 *
 * - dial, fetch `GET /api/crl`, open the control stream with a `hello`
 *   publishing two services, and count as joined on the hub's `welcome`;
 * - PING the hub every 10 s and drop the session if no answer comes within
 *   10 s (the hub's PINGs are answered by nghttp2 itself);
 * - refuse every tunnel (`open`) and management request (`manage`) it is sent,
 *   as an agent whose services point nowhere would;
 * - reconnect as the agent does: within a second (at a random moment) after
 *   losing an admitted session, otherwise after an exponential backoff from 0.25 s to 30 s with jitter
 *   (× 0.5–1.5), reset by each `welcome`.
 *
 * What it leaves out: the CRL is fetched but not verified (verification is the
 * agent's CPU, not the hub's), and no data connections are held (an idle
 * agent keeps none). The first join is paced by `--concurrency` handshakes in
 * flight; reconnections are not paced beyond the backoff.
 *
 * Endpoint `g` (global index `--first` + i) has the id derived from its
 * user's key and the seed `sim-g` (`@ztm/shared/endpoint_id`), is named
 * `sim-0000g`, owned by user `users[g % users.length]`, dials from
 * one of 100 loopback addresses (127.1.0.x: real endpoints come from many
 * addresses, and the hub caps unadmitted connections per address), and offers `tcp/web` (to everyone)
 * and `tcp/db-(g % 100)`.
 *
 * Credentials come from a JSON file (`--credentials`: `{ca, users: [{user,
 * certificate, privateKey}]}`). Every 250 ms, when anything changed, it
 * writes one JSON line of counters (`SimCounters`) to stdout.
 *
 *   deno run --allow-net=127.0.0.1,127.1.0.1,… --allow-read=creds.json bench/scale_sim.ts \
 *     --ports=PORT[,PORT…] --first=0 --count=2500 --credentials=creds.json
 */
import http2, { type ClientHttp2Session } from "node:http2";
import { parseCommandLine } from "@ztm/shared/flags";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import {
  HUB_PATHS,
  type HubMessage,
  onControlMessages,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  WINDOW_BYTES,
} from "@ztm/shared/protocol";

/** The agent's backoff bounds (`agent/hub_link.ts`). */
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
const FIRST_REDIAL_SPREAD_MS = 1_000;

/** Counters one simulator process reports on each stdout line. */
export interface SimCounters {
  /** Sessions whose control stream got a welcome and is still open (endpoints × hubs). */
  connected: number;
  /** `connected`, by the hub's port. */
  byPort: Record<string, number>;
  /** Welcomes received so far (first joins and rejoins). */
  joins: number;
  /** Failed dials and lost sessions so far. */
  failures: number;
  /** Failures by cause (digits dropped, so ports and addresses do not split a cause). */
  causes: Record<string, number>;
  /** Tunnel and management requests the hub sent and the simulator refused. */
  refused: number;
}

/** Counters before anything happened. */
export function noCounters(): SimCounters {
  return { connected: 0, byPort: {}, joins: 0, failures: 0, refused: 0, causes: {} };
}

/** Credentials of the simulated users. */
export interface SimCredentials {
  ca: string;
  users: { user: string; certificate: string; privateKey: string }[];
}

/** Endpoint id of simulated endpoint `g` with `creds`. */
export function simEndpointId(g: number, creds: SimCredentials): string {
  return endpointIdOfCertificate(creds.users[g % creds.users.length].certificate, `sim-${g}`);
}

/** Loopback addresses the simulated endpoints dial from (endpoint `g` from the `g % 100`th). */
export const SIM_SOURCE_ADDRESSES: readonly string[] = Array.from(
  { length: 100 },
  (_, i) => `127.1.0.${i + 1}`,
);

/** The loopback address simulated endpoint `g` dials from. */
export function simSourceAddress(g: number): string {
  return SIM_SOURCE_ADDRESSES[g % SIM_SOURCE_ADDRESSES.length];
}

/** Endpoint name of simulated endpoint `g` (zero-padded so names sort like numbers). */
export function simEndpointName(g: number): string {
  return `sim-${String(g).padStart(5, "0")}`;
}

/** The services simulated endpoint `g` publishes. */
export function simServices(g: number): { proto: "tcp"; name: string; users: string[] }[] {
  return [
    { proto: "tcp", name: "web", users: ["*"] },
    { proto: "tcp", name: `db-${g % 100}`, users: [] },
  ];
}

interface Config {
  ports: number[];
  first: number;
  count: number;
  concurrency: number;
  creds: SimCredentials;
}

/** One simulated endpoint's hub link. */
class SimEndpoint {
  #g: number;
  #port: number;
  #cfg: Config;
  #counters: SimCounters;
  #attempt = 0;
  #connected = false;
  #onFirstOutcome: (() => void) | undefined;

  constructor(
    g: number,
    port: number,
    cfg: Config,
    counters: SimCounters,
    onFirstOutcome: () => void,
  ) {
    this.#g = g;
    this.#port = port;
    this.#cfg = cfg;
    this.#counters = counters;
    this.#onFirstOutcome = onFirstOutcome;
  }

  connect(): void {
    const { creds } = this.#cfg;
    const port = this.#port;
    const user = creds.users[this.#g % creds.users.length];
    const session = http2.connect(`https://127.0.0.1:${port}`, {
      ca: creds.ca,
      cert: user.certificate,
      key: user.privateKey,
      minVersion: "TLSv1.2",
      servername: "localhost",
      settings: { initialWindowSize: WINDOW_BYTES },
      localAddress: simSourceAddress(this.#g),
    } as http2.SecureClientSessionOptions);
    let failed = false;
    let ping: ReturnType<typeof setInterval> | undefined;
    const fail = (why: string) => {
      if (failed) return;
      failed = true;
      clearInterval(ping);
      if (!session.destroyed) session.destroy();
      this.#scheduleReconnect(why);
    };
    session.on("error", (err) => fail(err instanceof Error ? err.message : String(err)));
    session.on("goaway", () => {
      if (this.#connected) this.#attempt = 0;
      fail("goaway");
    });
    session.on("close", () => fail("session closed"));
    session.once("connect", async () => {
      session.setLocalWindowSize(WINDOW_BYTES);
      try {
        await this.#fetchCrl(session);
      } catch (err) {
        fail(`crl: ${err instanceof Error ? err.message : err}`);
        return;
      }
      if (failed) return;
      this.#openControl(session, fail, () => (ping = this.#startPing(session)));
    });
  }

  #fetchCrl(session: ClientHttp2Session): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = session.request({
        ":method": "GET",
        ":path": HUB_PATHS.crl,
        [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
      }, { endStream: true });
      let status = 0;
      stream.on("error", (err) => reject(err));
      stream.once("response", (h) => (status = Number(h[":status"])));
      stream.on("data", () => {});
      stream.once("close", () => {
        if (status === 200 || status === 503) resolve();
        else reject(new Error(`status ${status || "none"}`));
      });
    });
  }

  #openControl(
    session: ClientHttp2Session,
    fail: (why: string) => void,
    onWelcome: () => void,
  ): void {
    const g = this.#g;
    const control = session.request({
      ":method": "POST",
      ":path": HUB_PATHS.control(simEndpointId(g, this.#cfg.creds)),
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    }, { endStream: false });
    control.on("error", () => {});
    control.write(
      JSON.stringify({
        type: "hello",
        name: simEndpointName(g),
        seed: `sim-${g}`,
        version: "sim",
        services: simServices(g),
      }) + "\n",
    );
    let answered = false;
    control.once("response", (headers) => {
      answered = true;
      const status = Number(headers[":status"]);
      if (status !== 200) fail(`control refused (${status})`);
    });
    onControlMessages<HubMessage>(control, {
      fail: (err) => fail(String(err)),
      message: (msg) => {
        if (msg.type === "welcome") {
          this.#attempt = 0;
          this.#connected = true;
          this.#counters.connected++;
          this.#counters.byPort[this.#port] = (this.#counters.byPort[this.#port] ?? 0) + 1;
          this.#counters.joins++;
          this.#firstOutcome();
          onWelcome();
        } else if (msg.type === "open") {
          this.#counters.refused++;
          control.write(
            JSON.stringify({
              type: "refuse",
              sid: msg.sid,
              status: 503,
              code: "simulated_endpoint",
              message: "A simulated endpoint has no services behind it",
            }) + "\n",
          );
        } else if (msg.type === "manage") {
          this.#counters.refused++;
          control.write(
            JSON.stringify({
              type: "managed",
              rid: msg.rid,
              status: 503,
              body: '{"error":{"code":"simulated_endpoint","message":"Simulated"}}',
            }) + "\n",
          );
        }
      },
    });
    control.on("close", () => fail(answered ? "control stream closed" : "refused by the hub"));
  }

  /** PINGs every 10 s from the welcome on, as the agent does (so joins spread the PINGs). */
  #startPing(session: ClientHttp2Session): ReturnType<typeof setInterval> {
    return setInterval(() => {
      if (session.destroyed) return;
      const dead = setTimeout(
        () => session.destroy(new Error("hub did not answer PING")),
        PING_TIMEOUT_MS,
      );
      try {
        session.ping((err) => {
          clearTimeout(dead);
          if (err && !session.destroyed) session.destroy(err);
        });
      } catch {
        clearTimeout(dead);
      }
    }, PING_INTERVAL_MS);
  }

  #firstOutcome(): void {
    const done = this.#onFirstOutcome;
    this.#onFirstOutcome = undefined;
    done?.();
  }

  #scheduleReconnect(why: string): void {
    const wasConnected = this.#connected;
    if (wasConnected) {
      this.#counters.connected--;
      this.#counters.byPort[this.#port]--;
    }
    this.#connected = false;
    this.#counters.failures++;
    const cause = why.replace(/\d+/g, "#").slice(0, 120);
    this.#counters.causes[cause] = (this.#counters.causes[cause] ?? 0) + 1;
    this.#firstOutcome();
    const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.#attempt);
    const delay = this.#attempt === 0 && wasConnected
      ? Math.round(Math.random() * FIRST_REDIAL_SPREAD_MS)
      : Math.round(base * (0.5 + Math.random()));
    this.#attempt++;
    setTimeout(() => this.connect(), delay);
  }
}

/**
 * Starts every endpoint's session with every hub, at most `concurrency` first
 * dials in flight (an endpoint's hubs one after another); reports counters.
 */
function run(cfg: Config): void {
  const counters = noCounters();
  let next = 0;
  const startOne = () => {
    if (next >= cfg.count * cfg.ports.length) return;
    const k = next++;
    const g = cfg.first + Math.floor(k / cfg.ports.length);
    new SimEndpoint(g, cfg.ports[k % cfg.ports.length], cfg, counters, startOne).connect();
  };
  for (let i = 0; i < cfg.concurrency; i++) startOne();
  let last = "";
  setInterval(() => {
    const line = JSON.stringify(counters);
    if (line === last) return;
    last = line;
    console.log(line);
  }, 250);
}

if (import.meta.main) {
  const flags = parseCommandLine({
    name: "bench/scale_sim.ts",
    summary: "Simulates endpoints joined to one or several hubs (see the module comment).",
    flags: [
      {
        name: "ports",
        kind: "string",
        help: "the hubs' ports on 127.0.0.1, comma-separated (every endpoint on each)",
      },
      { name: "first", kind: "integer", default: "0", help: "global index of the first endpoint" },
      { name: "count", kind: "integer", default: "100", help: "endpoints to simulate" },
      { name: "concurrency", kind: "integer", default: "32", help: "first dials in flight" },
      { name: "credentials", kind: "string", help: "JSON file {ca, users: [...]}" },
    ],
    examples: [],
  }, Deno.args);
  const creds = JSON.parse(Deno.readTextFileSync(flags.string("credentials")!)) as SimCredentials;
  if (!creds.users?.length) throw new Error("the credentials file lists no users");
  run({
    ports: flags.string("ports")!.split(",").map(Number),
    first: flags.integer("first"),
    count: flags.integer("count"),
    concurrency: Math.max(1, flags.integer("concurrency")),
    creds,
  });
}
