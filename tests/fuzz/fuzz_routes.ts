/**
 * The routes the mesh fuzzer bends: for each route of the CA, the agent and
 * the hub, its valid request and the ways it is made hostile (see `fuzz.ts`
 * for the mutators). Valid requests use the fuzzer's own names, so that what
 * a run may change never includes the members the run itself needs.
 */
import { parseCertificate } from "@ztm/shared/certs";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { type SignedRequest, signRequest } from "@ztm/shared/signed_request";
import type { UserFiles } from "../fixtures/harness.ts";
import type { HubClient } from "../fixtures/hub_client.ts";
import { MESH, type MeshAgent, type TestMesh } from "../fixtures/mesh_fixture.ts";
import {
  type FuzzRequest,
  type FuzzRoute,
  jsonBody,
  method,
  query,
  type Rng,
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

const JSON_TYPE = { "content-type": "application/json" };

/** The routes, each with its valid request and the ways it is bent. */
export function fuzzRoutes(m: FuzzMesh): FuzzRoute<MeshRequest>[] {
  const ep = m.alice.endpointId;
  const bobSerial = parseCertificate(m.bob.certificate).serialNumber.toLowerCase();
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
    agentRoute("GET /api/meshes/:mesh/proxy", (rng) => ({
      method: method(rng, "GET"),
      path: `${meshPath(rng)}/proxy`,
    })),
    agentRoute("PUT /api/meshes/:mesh/proxy", (rng) => ({
      method: method(rng, "PUT"),
      path: `${meshPath(rng)}/proxy`,
      body: jsonBody(
        rng,
        { listen: rng.pick(["127.0.0.1:0", "[::1]:0", "0.0.0.0:0", "x:y"]) },
        0.8,
      ),
    })),
    agentRoute("DELETE /api/meshes/:mesh/proxy", (rng) => ({
      method: method(rng, "DELETE"),
      path: `${meshPath(rng)}/proxy`,
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
    hubRoute("POST /api/renewals", (rng) => ({
      method: method(rng, "POST"),
      path: HUB_PATHS.renewals,
      // Bob's own serial, so most reach the CA, which refuses the unsigned renewal.
      body: jsonBody(rng, {
        serial: bobSerial,
        csr: "-----BEGIN CERTIFICATE REQUEST-----",
        time: Date.now(),
        signature: "AAAA",
      }),
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
