/**
 * Fuzzing a whole mesh: a CA, a hub and alice's agent as real processes, and
 * routes of all three APIs for `fuzz.ts` to bend — the CA's REST API and the
 * agent's local API over HTTP, the hub's routes over a mutual-TLS HTTP/2
 * session as bob (signed management requests signed by root, one field
 * altered after signing).
 *
 * What the run must show: no 5xx but a deliberate 503, every request
 * answered, every process alive, and afterwards no state changed except by a
 * request that was answered 2xx (those are recorded as they happen).
 *
 * @example
 * ```ts
 * await using h = new Harness();
 * const run = await fuzzMesh(h, { seed: 1, perRoute: 200, concurrency: 6 });
 * console.log(run.histogram.format());
 * ```
 */
import { x509 } from "@ztm/shared/certs";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { type SignedRequest, signRequest } from "@ztm/shared/signed_request";
import { api, type Harness, issueUser, type UserFiles } from "./harness.ts";
import { errorCode, HubClient, REQUEST_TIMEOUT_MS, userTls } from "./hub_client.ts";
import { addService, MESH, type MeshAgent, startMeshOf, type TestMesh } from "./mesh_fixture.ts";
import { startEchoServer } from "./net_helpers.ts";
import { keyLeaks } from "./secret_scan.ts";
import {
  type FuzzRequest,
  type FuzzRoute,
  Histogram,
  jsonBody,
  method,
  type Outcome,
  query,
  type Rng,
  runFuzz,
  segment,
} from "./fuzz.ts";

/** A request and where it goes. */
export interface MeshRequest extends FuzzRequest {
  target: "ca" | "agent" | "hub";
  /** A hub route answered on a stream that stays open on success (control, tunnel). */
  stream?: boolean;
  /** For a management request: the endpoint path it would change, if applied. */
  manages?: string;
}

/** A change some request made, as `target method path` with the path decoded. */
export type Write = string;

/** What the fuzzer needs to reach and sign with. */
export interface FuzzMesh extends TestMesh {
  alice: MeshAgent;
  bob: UserFiles;
  root: UserFiles;
  hubClient: HubClient;
  caToken: string;
  agentToken: string;
  csrPem: string;
}

/** The mesh a fuzz run uses: alice's agent with an echo service open to bob and root. */
async function startFuzzMesh(h: Harness): Promise<FuzzMesh & AsyncDisposable> {
  const m = await startMeshOf(h, ["alice"]);
  const echo = await startEchoServer();
  const alice = m.agents.alice;
  await addService(alice, "echo", echo.port, ["bob", "root"]);
  const bob = await issueUser(m.ca.url, "bob");
  const root = await issueUser(m.ca.url, "root");
  const hubClient = HubClient.connect(m.hub.port, userTls(bob));
  const control = await hubClient.openControl("fz-bob", "fz-bob");
  if (control.status !== 200) throw new Error(`bob's control stream: ${control.text}`);
  control.stream.on("data", () => {});
  const caToken = (await Deno.readTextFile(`${m.ca.database}.token`)).trim();
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=hub",
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  return {
    ...m,
    alice,
    bob,
    root,
    hubClient,
    caToken,
    agentToken: (await Deno.readTextFile(`${alice.proc.database}.token`)).trim(),
    csrPem: csr.toString("pem"),
    async [Symbol.asyncDispose]() {
      await hubClient.close();
      await echo[Symbol.asyncDispose]();
    },
  };
}

const JSON_TYPE = { "content-type": "application/json" };

/** The routes, each with its valid request and the ways it is bent. */
function fuzzRoutes(m: FuzzMesh): FuzzRoute<MeshRequest>[] {
  const ep = m.alice.endpointId;
  const agentAuth = { authorization: `Bearer ${m.agentToken}` };
  const caRoute = (
    name: string,
    make: (rng: Rng) => Omit<MeshRequest, "target">,
  ): FuzzRoute<MeshRequest> => ({
    name: `ca ${name}`,
    make: (rng) => {
      const req = make(rng);
      // Revoking the mesh's own members would end the rest of the run: a bent method
      // stops short of that (revoking the fuzzer's own names is fuzzed).
      if (req.method === "DELETE" && /^\/api\/certificates\/(alice|bob|root)$/i.test(req.path)) {
        req.method = "PATCH";
      }
      return { ...req, target: "ca" };
    },
  });
  const agentRoute = (
    name: string,
    make: (
      rng: Rng,
    ) => Omit<MeshRequest, "target" | "headers"> & { headers?: Record<string, string> },
  ): FuzzRoute<MeshRequest> => ({
    name: `agent ${name}`,
    make: (rng) => {
      const req = make(rng);
      // A DELETE that happens to land on the mesh under test would leave it, answered 200,
      // and the rest of the run would only see 404s: bent methods stop short of that.
      if (req.method === "DELETE" && req.path === `/api/meshes/${MESH}`) req.method = "PATCH";
      // Now and then without the token, with a wrong one, or from a foreign page.
      const roll = rng.int(20);
      const auth: Record<string, string> = roll === 0
        ? {}
        : roll === 1
        ? { authorization: "Bearer nope" }
        : agentAuth;
      const origin: Record<string, string> = roll === 2 ? { origin: "http://evil.example" } : {};
      return {
        ...req,
        headers: { ...JSON_TYPE, ...auth, ...origin, ...req.headers },
        target: "agent",
      };
    },
  });
  const hubRoute = (
    name: string,
    make: (
      rng: Rng,
    ) => Omit<MeshRequest, "target" | "headers"> | Promise<Omit<MeshRequest, "target" | "headers">>,
  ): FuzzRoute<MeshRequest> => ({
    name: `hub ${name}`,
    make: async (rng) => ({ ...(await make(rng)), headers: {}, target: "hub" }),
  });
  const meshPath = (rng: Rng) => `/api/meshes/${segment(rng, MESH, 0.15)}`;
  const epPath = (rng: Rng) => `${meshPath(rng)}/endpoints/${segment(rng, ep, 0.15)}`;
  const service = (rng: Rng) => ({
    host: "127.0.0.1",
    port: 7000 + rng.int(100),
    users: ["bob"],
    strict: false,
  });
  const fzName = (rng: Rng) => `fz-${rng.int(40)}`;

  return [
    caRoute("GET /api/certificates/ca", (rng) => ({
      method: method(rng, "GET"),
      path: "/api/certificates/ca" + query(rng, {}),
      headers: {},
    })),
    caRoute("GET /api/certificates", (rng) => ({
      method: method(rng, "GET"),
      path: "/api/certificates" + query(rng, {}),
      headers: {},
    })),
    caRoute("POST /api/certificates/:name", (rng) => ({
      method: method(rng, "POST"),
      path: `/api/certificates/${segment(rng, fzName(rng), 0.4)}`,
      headers: {},
      body: rng.chance(0.4)
        ? ""
        : rng.chance(0.5)
        ? jsonBody(rng, { csr: "-----BEGIN CERTIFICATE REQUEST-----" }, 1)
        : "-----BEGIN CERTIFICATE REQUEST-----\n" + jsonBody(rng, "garbage", 1),
    })),
    caRoute("GET /api/certificates/:name", (rng) => ({
      method: method(rng, "GET"),
      path: `/api/certificates/${segment(rng, rng.pick(["alice", "bob", fzName(rng)]), 0.4)}`,
      headers: {},
    })),
    caRoute("DELETE /api/certificates/:name", (rng) => ({
      // Only names the fuzzer itself issued are valid targets: alice, bob and root stay.
      method: method(rng, "DELETE"),
      path: `/api/certificates/${segment(rng, fzName(rng), 0.4)}`,
      headers: {},
    })),
    caRoute("GET /api/crl", (rng) => ({
      method: method(rng, "GET"),
      path: "/api/crl" + query(rng, {}),
      headers: {},
    })),
    caRoute("GET /api/revocations", (rng) => ({
      method: method(rng, "GET"),
      // wait stays 0 (a long poll would only be slow); the query mutations bend it.
      path: "/api/revocations" + query(rng, { since: String(rng.int(5)), wait: "0" }),
      headers: {},
    })),
    caRoute("POST /api/hub-certificates", (rng) => {
      const roll = rng.int(4);
      const csr = roll === 0
        ? m.csrPem.replace(/[A-Za-z](?=[A-Za-z0-9+/]{10}\n-----END)/, "A") // a flipped character
        : roll === 1
        ? jsonBody(rng, m.csrPem, 1)
        : m.csrPem;
      return {
        method: method(rng, "POST"),
        path: "/api/hub-certificates",
        headers: rng.chance(0.25) ? {} as Record<string, string> : {
          authorization: `Bearer ${m.caToken}`,
          "content-type": "application/pkcs10",
        },
        body: csr,
      };
    }),

    agentRoute("GET /api/meshes", (rng) => ({ method: method(rng, "GET"), path: "/api/meshes" })),
    agentRoute(
      "GET /api/meshes/:mesh",
      (rng) => ({ method: method(rng, "GET"), path: meshPath(rng) }),
    ),
    agentRoute("POST /api/meshes/:mesh", (rng) => ({
      method: method(rng, "POST"),
      path: `/api/meshes/${segment(rng, rng.pick([MESH, "fz-mesh"]), 0.3)}`,
      body: jsonBody(rng, {
        ca: m.alice.files.ca,
        agent: joinFiles(rng, m.alice.files),
        bootstraps: [rng.pick([m.hub.address, "256.1.1.1:1", "localhost:0", ""])],
      }),
    })),
    agentRoute("DELETE /api/meshes/:mesh", (rng) => ({
      // Not the mesh under test: it is the one the other routes need.
      method: method(rng, "DELETE"),
      path: `/api/meshes/${segment(rng, "fz-mesh", 0.4)}`,
    })),
    agentRoute("GET /api/meshes/:mesh/policy", (rng) => ({
      method: method(rng, "GET"),
      path: `${meshPath(rng)}/policy`,
    })),
    agentRoute("PUT /api/meshes/:mesh/policy", (rng) => ({
      method: method(rng, "PUT"),
      path: `${meshPath(rng)}/policy`,
      body: jsonBody(rng, { remoteManagement: true, targets: ["*"], listen: ["*"] }, 0.8),
    })),
    agentRoute("GET /api/meshes/:mesh/endpoints", (rng) => ({
      method: method(rng, "GET"),
      path: `${meshPath(rng)}/endpoints` + query(rng, { limit: "10", offset: "0", q: "a" }),
    })),
    agentRoute("GET /api/meshes/:mesh/endpoints/:ep", (rng) => ({
      method: method(rng, "GET"),
      path: epPath(rng),
    })),
    agentRoute("GET /api/meshes/:mesh/services", (rng) => ({
      method: method(rng, "GET"),
      path: `${meshPath(rng)}/services` + query(rng, { limit: "10", q: "echo" }),
    })),
    agentRoute(
      "GET …/services",
      (rng) => ({ method: method(rng, "GET"), path: `${epPath(rng)}/services` }),
    ),
    agentRoute("POST …/services/:proto/:name", (rng) => ({
      method: method(rng, "POST"),
      path: `${epPath(rng)}/services/${segment(rng, "tcp", 0.1)}/${segment(rng, fzName(rng))}`,
      body: jsonBody(rng, service(rng)),
    })),
    agentRoute("DELETE …/services/:proto/:name", (rng) => ({
      method: method(rng, "DELETE"),
      path: `${epPath(rng)}/services/${segment(rng, "tcp", 0.1)}/${segment(rng, fzName(rng))}`,
    })),
    agentRoute(
      "GET …/ports",
      (rng) => ({ method: method(rng, "GET"), path: `${epPath(rng)}/ports` }),
    ),
    agentRoute("POST …/ports/:ip/:proto/:port", (rng) => ({
      // Valid port mappings would bind real ports other tests may be using: the address is
      // one no interface has (400), so everything else about the request is what is fuzzed.
      method: method(rng, "POST"),
      path: `${epPath(rng)}/ports/${segment(rng, "203.0.113.77", 0.3)}/${
        segment(rng, "tcp", 0.1)
      }/${segment(rng, String(20_000 + rng.int(100)), 0.3)}`,
      body: jsonBody(rng, { target: { service: "echo" } }),
    })),
    agentRoute("DELETE …/ports/:ip/:proto/:port", (rng) => ({
      method: method(rng, "DELETE"),
      path: `${epPath(rng)}/ports/${segment(rng, "127.0.0.1", 0.3)}/${segment(rng, "tcp", 0.1)}/${
        segment(rng, String(20_000 + rng.int(100)), 0.3)
      }`,
    })),
    agentRoute("GET …/log", (rng) => ({ method: method(rng, "GET"), path: `${epPath(rng)}/log` })),
    agentRoute("POST /api/login-codes", (rng) => ({
      method: method(rng, "POST"),
      path: "/api/login-codes",
      body: rng.chance(0.3) ? jsonBody(rng, {}, 1) : undefined,
    })),

    hubRoute("GET /api/status", (rng) => ({ method: method(rng, "GET"), path: HUB_PATHS.status })),
    hubRoute("GET /api/endpoints", (rng) => ({
      method: method(rng, "GET"),
      path: HUB_PATHS.endpoints + query(rng, { limit: "10", offset: "0", q: "alice" }),
    })),
    hubRoute("GET /api/endpoints/:id", (rng) => ({
      method: method(rng, "GET"),
      path: `/api/endpoints/${segment(rng, rng.pick([ep, "fz-bob"]), 0.4)}`,
    })),
    hubRoute("GET /api/services", (rng) => ({
      method: method(rng, "GET"),
      path: HUB_PATHS.services + query(rng, { limit: "10", q: "echo" }),
    })),
    hubRoute("GET /api/crl", (rng) => ({ method: method(rng, "GET"), path: HUB_PATHS.crl })),
    hubRoute("POST /api/endpoints/:id/control", (rng) => ({
      // Bob's own ids only (fz-b…): another user's id is refused, and that is fuzzed too.
      method: method(rng, "POST"),
      path: `/api/endpoints/${segment(rng, rng.pick([`fz-b${rng.int(20)}`, ep]), 0.3)}/control`,
      body: jsonBody(rng, { type: "hello", name: "fz", version: "t", services: [] }) + "\n",
      stream: true,
    })),
    hubRoute("POST /api/endpoints/:id/services/:proto/:name", (rng) => ({
      method: method(rng, "POST"),
      path: `/api/endpoints/${segment(rng, ep, 0.3)}/services/${segment(rng, "tcp", 0.2)}/${
        segment(rng, "echo", 0.3)
      }`,
      stream: true,
    })),
    hubRoute("POST /api/sessions/:sid", (rng) => ({
      method: method(rng, "POST"),
      path: `/api/sessions/${segment(rng, crypto.randomUUID(), 0.3)}`,
      body: rng.chance(0.5) ? jsonBody(rng, {}, 1) : undefined,
      stream: true,
    })),
    hubRoute("POST /api/endpoints/:id/manage", async (rng) => {
      const name = fzName(rng);
      // Not bob's own endpoint: this client never answers, so each would wait out the hub's
      // manage timeout (15 s, then a deliberate 504).
      const target = ep;
      const field = rng.chance(0.8) ? rng.pick(ALTERABLE) : undefined;
      const bend = rng.chance(0.15);
      const odd = bend ? jsonBody(rng, {}, 1) : "";
      const path = `/api/endpoints/${segment(rng, target, 0.1)}/manage`;
      const signed = await signRequest({
        method: "POST",
        path: `services/tcp/${name}`,
        body: JSON.stringify({ host: "127.0.0.1", port: 7100, users: [], strict: false }),
        target: ep,
        from: "fz-root",
      }, { certificate: m.root.certificate, privateKey: m.root.privateKey });
      const sent = field ? alter(signed, field, m.bob.certificate) : signed;
      return {
        method: "POST",
        path,
        body: bend ? odd : JSON.stringify(sent),
        manages: `services/tcp/${name}`,
      };
    }),
  ];
}

/**
 * The `agent` part of a join: alice's files, or with the private key where it
 * does not belong or cut short — so an error that quoted its input would
 * quote the key (the key scan of error answers catches that).
 */
function joinFiles(rng: Rng, files: UserFiles): Record<string, unknown> {
  const { certificate, privateKey } = files;
  const cut = privateKey.slice(0, 40 + rng.int(privateKey.length - 40));
  return rng.pick([
    { name: "fz-join", certificate, privateKey },
    { name: "fz-join", certificate, privateKey },
    { name: "fz-join", certificate: privateKey, privateKey },
    { name: "fz-join", certificate, privateKey: cut },
    { name: privateKey, certificate, privateKey },
    { name: "fz-join", certificate, privateKey: privateKey.replace("PRIVATE KEY", "PUBLIC KEY") },
  ]);
}

const ALTERABLE = [
  "method",
  "path",
  "body",
  "target",
  "from",
  "nonce",
  "expires",
  "certificate",
  "signature",
] as const;

/** `signed` with one field changed after signing. */
function alter(
  signed: SignedRequest,
  field: (typeof ALTERABLE)[number],
  otherCertificate: string,
): Record<string, unknown> {
  const changed: Record<string, unknown> = { ...signed };
  const flip = (s: string) => s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11);
  changed[field] = {
    method: "DELETE",
    path: "services/tcp/echo",
    body: JSON.stringify({ host: "10.0.0.1", port: 22, users: ["*"] }),
    target: "fz-bob",
    from: "someone-else",
    nonce: "00".repeat(16),
    expires: signed.expires + 1,
    certificate: otherCertificate,
    signature: flip(signed.signature),
  }[field];
  return changed;
}

/** Sends one request to its target; records it in `writes` when it was a change answered 2xx. */
function sender(m: FuzzMesh, writes: Write[], examples: string[]) {
  return async (_route: FuzzRoute<MeshRequest>, req: MeshRequest): Promise<Outcome> => {
    let status: Outcome;
    if (req.target === "hub") {
      status = await sendToHub(m.hubClient, req);
    } else {
      const base = req.target === "ca" ? m.ca.url : m.alice.url;
      const noBody = req.method === "GET" || req.method === "HEAD";
      try {
        const res = await fetch(base + req.path, {
          method: req.method,
          headers: req.headers,
          body: noBody ? undefined : req.body,
          redirect: "manual",
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        status = outcomeOf(res.status, await res.text());
      } catch (err) {
        // fetch refuses some URLs and bodies before sending; a dropped connection is not that.
        status = err instanceof DOMException && err.name === "TimeoutError"
          ? "timeout"
          : /connection|reset|closed|refused/i.test(String(err))
          ? "no-response"
          : "client-refused";
      }
    }
    if (
      (status === "no-response" || status === "timeout" || status === "key-in-error") &&
      examples.length < 10
    ) {
      examples.push(
        `${status}: ${req.method} ${req.path.slice(0, 120)} ${
          JSON.stringify((req.body ?? "").slice(0, 120))
        }`,
      );
    }
    if (typeof status === "number" && status >= 500 && status !== 503 && examples.length < 10) {
      examples.push(`${status}: ${req.method} ${req.path.slice(0, 120)}`);
    }
    if (typeof status === "number" && status >= 200 && status < 300 && req.method !== "GET") {
      const path = req.manages ?? safeDecode(req.path.split("?")[0]);
      writes.push(`${req.target} ${req.method} ${path}`);
    }
    return status;
  };
}

function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/**
 * 5xx answers that are the design, not a fault: the provider's target is down
 * (a tunnel to a service whose port nothing listens on) or the managed agent
 * did not answer in time.
 */
const DELIBERATE_5XX = new Set(["502 target_unreachable", "504 manage_timeout"]);

/**
 * The status, `"status code"` for a deliberate 5xx, or `key-in-error` when an
 * error answer carries private key material (the join route gets keys in its
 * bodies, and an error must never echo them).
 */
function outcomeOf(status: number, text: string): Outcome {
  if (status >= 400 && keyLeaks([{ name: "answer", lines: text.split("\n") }]).length) {
    return "key-in-error";
  }
  const labelled = `${status} ${errorCode(text)}`;
  return status >= 500 && DELIBERATE_5XX.has(labelled) ? labelled : status;
}

async function sendToHub(client: HubClient, req: MeshRequest): Promise<Outcome> {
  try {
    if (req.stream && req.method === "POST") {
      const opened = await client.openStream(req.path, req.body);
      if (opened.status !== undefined && opened.status !== 200) {
        return outcomeOf(opened.status, opened.text);
      }
      // Ended, not reset: nghttp2 answers a burst of RST_STREAMs with GOAWAY (DESIGN section 8).
      if (opened.status === 200) {
        opened.stream.on("error", () => {});
        opened.stream.resume();
        opened.stream.end();
      }
      return opened.status ?? "no-response";
    }
    const reply = await client.request(req.method, req.path, { body: req.body });
    return reply.status === undefined ? "no-response" : outcomeOf(reply.status, reply.text);
  } catch (err) {
    return /neither answered/.test(String(err)) ? "timeout" : "no-response";
  }
}

/** What the fuzz must not change unasked: CA certificates, alice's meshes, services, ports, policy, and her endpoint at the hub. */
export interface MeshState {
  certificates: Map<string, { name: string; revoked: boolean }>;
  meshes: string[];
  services: Map<string, string>;
  ports: Map<string, string>;
  policy: string;
  aliceAtHub: string;
}

async function snapshot(m: FuzzMesh): Promise<MeshState> {
  const certs = await (await fetch(`${m.ca.url}/api/certificates`)).json();
  const get = async (path: string) => {
    const res = await api(m.alice.url, "GET", path);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const epBase = `/api/meshes/${MESH}/endpoints/${m.alice.endpointId}`;
  const byKey = (items: Record<string, unknown>[], key: (x: Record<string, unknown>) => string) =>
    new Map(items.map((x) => [key(x), JSON.stringify(x)]));
  // A fresh session: the fuzzed one must not be what the check depends on.
  await using probe = HubClient.connect(m.hub.port, userTls(m.bob));
  const aliceAtHub = await probe.request("GET", HUB_PATHS.endpoint(m.alice.endpointId));
  const hubRecord = aliceAtHub.status === 200 ? JSON.parse(aliceAtHub.text) : aliceAtHub;
  return {
    certificates: new Map(
      certs.map((c: { serial: string; name: string; revoked: boolean }) => [c.serial, c]),
    ),
    meshes: (await get("/api/meshes")).map((x: { name: string }) => x.name).sort(),
    services: byKey(await get(`${epBase}/services`), (s) => `services/${s.proto}/${s.name}`),
    ports: byKey(await get(`${epBase}/ports`), (p) => `ports/${p.ip}/${p.proto}/${p.port}`),
    policy: JSON.stringify(await get(`/api/meshes/${MESH}/policy`)),
    aliceAtHub: JSON.stringify({ user: hubRecord.user, online: hubRecord.online }),
  };
}

/** Changes between two snapshots that no 2xx request in `writes` explains. */
export function unexplained(before: MeshState, after: MeshState, writes: Write[]): string[] {
  const problems: string[] = [];
  const wrote = (pred: (w: Write) => boolean) => writes.some(pred);
  for (const [serial, c] of after.certificates) {
    const was = before.certificates.get(serial);
    const lower = c.name.toLowerCase();
    if (!was) {
      const issued = wrote((w) =>
        (w.startsWith("ca POST /api/certificates/") &&
          w.slice("ca POST /api/certificates/".length).toLowerCase() === lower) ||
        w === "ca POST /api/hub-certificates"
      );
      if (!issued) problems.push(`certificate ${serial} (${c.name}) appeared`);
    } else if (c.revoked && !was.revoked) {
      const revoked = wrote((w) =>
        w.startsWith("ca DELETE /api/certificates/") &&
        w.slice("ca DELETE /api/certificates/".length).toLowerCase() === lower
      );
      if (!revoked) problems.push(`certificate ${serial} (${c.name}) was revoked`);
    }
  }
  for (const serial of before.certificates.keys()) {
    if (!after.certificates.has(serial)) problems.push(`certificate ${serial} vanished`);
  }
  const meshChanges = [
    ...after.meshes.filter((n) => !before.meshes.includes(n)),
    ...before.meshes.filter((n) => !after.meshes.includes(n)),
  ];
  for (const name of meshChanges) {
    if (!wrote((w) => w.startsWith("agent ") && w.endsWith(` /api/meshes/${name}`))) {
      problems.push(`mesh ${name} joined or left`);
    }
  }
  for (
    const [what, b, a] of [["service", before.services, after.services], [
      "port",
      before.ports,
      after.ports,
    ]] as const
  ) {
    for (const key of new Set([...b.keys(), ...a.keys()])) {
      if (b.get(key) === a.get(key)) continue;
      if (!wrote((w) => w.endsWith(`/${key}`) || w.endsWith(` ${key}`))) {
        problems.push(`${what} ${key} changed: ${b.get(key)} -> ${a.get(key)}`);
      }
    }
  }
  if (before.policy !== after.policy && !wrote((w) => w.includes(`/api/meshes/${MESH}/policy`))) {
    problems.push(`policy changed: ${before.policy} -> ${after.policy}`);
  }
  if (before.aliceAtHub !== after.aliceAtHub) {
    problems.push(`alice's endpoint at the hub: ${before.aliceAtHub} -> ${after.aliceAtHub}`);
  }
  return problems;
}

/** What a fuzz run found. */
export interface FuzzReport {
  seed: number;
  histogram: Histogram;
  routes: string[];
  /** Requests answered 5xx (other than 503) or not at all, by route and outcome. */
  failures: string[];
  /** The first few bad requests, to reproduce by hand. */
  examples: string[];
  /** When something failed: the last warnings and errors of each process. */
  logs: string[];
  /** Processes that exited during the run. */
  crashed: string[];
  /** State changes no 2xx request explains. */
  unexplained: string[];
  writes: number;
  ms: number;
}

/** The last warnings, errors and session events a process logged, for failure reports. */
function noteworthy(p: { logs: { msg?: string; level?: string }[] }): string[] {
  return p.logs
    .filter((l) => l.level !== "info" || /closed|goaway|refused|reconnect/.test(l.msg ?? ""))
    .slice(-15)
    .map((l) => JSON.stringify(l).slice(0, 300));
}

/** Starts a mesh, fuzzes every route `perRoute` times, and checks processes and state. */
export async function fuzzMesh(
  h: Harness,
  opts: {
    seed: number;
    perRoute: number;
    concurrency: number;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<FuzzReport> {
  await using m = await startFuzzMesh(h);
  const routes = fuzzRoutes(m);
  const before = await snapshot(m);
  const histogram = new Histogram();
  const writes: Write[] = [];
  const started = performance.now();
  const examples: string[] = [];
  await runFuzz({ ...opts, routes, send: sender(m, writes, examples), histogram });
  const ms = Math.round(performance.now() - started);
  const procs = [m.ca, m.hub, m.alice.proc];
  const crashed = procs.filter((p) => p.exited).map((p) => `${p.name}:\n${p.tail(20)}`);
  const failures: string[] = [];
  for (const [route, counts] of histogram.byRoute) {
    for (const [outcome, n] of counts) {
      const bad = outcome === "no-response" || outcome === "timeout" ||
        outcome === "key-in-error" ||
        (typeof outcome === "number" && outcome >= 500 && outcome !== 503);
      if (bad) failures.push(`${route}: ${outcome} x${n}`);
    }
  }
  let after = before;
  if (!crashed.length) {
    try {
      after = await snapshot(m);
    } catch (err) {
      throw new Error(
        `state check failed: ${err}\n${histogram.format()}\nagent:\n${
          noteworthy(m.alice.proc).join("\n")
        }\nhub:\n${noteworthy(m.hub).join("\n")}`,
      );
    }
  }
  const unexplainedChanges = unexplained(before, after, writes);
  if (m.hubClient.session.destroyed || m.hubClient.session.closed) {
    failures.push(`hub: bob's session ended during the run (${m.hubClient.errors.join("; ")})`);
  }
  const problems = failures.length + unexplainedChanges.length > 0;
  return {
    seed: opts.seed,
    examples,
    logs: problems
      ? [m.ca, m.hub, m.alice.proc].flatMap((p) => [`${p.name}:`, ...noteworthy(p)])
      : [],
    histogram,
    routes: routes.map((r) => r.name),
    failures,
    crashed,
    unexplained: unexplainedChanges,
    writes: writes.length,
    ms,
  };
}
