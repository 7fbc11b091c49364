/**
 * Fuzzing a whole mesh: a CA, a hub and alice's agent as real processes, and
 * routes of all three APIs for `fuzz.ts` to bend — the CA's REST API and the
 * agent's local API over HTTP, the hub's routes over a mutual-TLS HTTP/2
 * session as bob (signed management requests signed by root, one field
 * altered after signing).
 *
 * What the run must show: no 5xx but deliberate ones (503; 502
 * target_unreachable; 504 manage_timeout), every request answered, no error
 * answer carrying key material, every process alive, and afterwards no state
 * changed except by a request that was answered 2xx (recorded as they happen;
 * see `fuzz_state.ts`). The routes are in `fuzz_routes.ts`.
 *
 * @example
 * ```ts
 * await using h = new Harness();
 * const run = await fuzzMesh(h, { seed: 1, perRoute: 200, concurrency: 6 });
 * console.log(run.histogram.format());
 * ```
 */
import { x509 } from "@ztm/shared/certs";
import type { Harness } from "../fixtures/harness.ts";
import { issueUser } from "../fixtures/harness.ts";
import { errorCode, HubClient, REQUEST_TIMEOUT_MS, userTls } from "../fixtures/hub_client.ts";
import { addService, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { startEchoServer } from "../fixtures/net_helpers.ts";
import { keyLeaks } from "../fixtures/secret_scan.ts";
import { type FuzzRoute, Histogram, type Outcome, runFuzz } from "./fuzz.ts";
import { type FuzzMesh, fuzzRoutes, type MeshRequest, type Write } from "./fuzz_routes.ts";
import { snapshot, unexplained } from "./fuzz_state.ts";

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
      // Ended, not reset: nghttp2 answers a burst of RST_STREAMs with GOAWAY.
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
