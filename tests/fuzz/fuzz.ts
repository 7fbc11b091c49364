/**
 * A small seeded fuzzer for ztm's HTTP APIs: a deterministic random source,
 * mutators that bend a valid request (method, path segments, query, headers,
 * JSON body) into a hostile one, and a runner that sends a fixed number of
 * requests per route with bounded concurrency and keeps a histogram of the
 * statuses per route.
 *
 * Each request is generated from the seed and its own index, so a seed
 * reproduces the same requests whatever the concurrency; what a server does
 * with them may still interleave differently. Sending is left to the caller
 * (plain `fetch` for the CA and agent, a mutual-TLS HTTP/2 session for the
 * hub), and so is deciding what the answers prove (see `fuzz_mesh.ts`).
 */

/** A deterministic random source (mulberry32). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** One request as the fuzzer sends it. */
export interface FuzzRequest {
  method: string;
  /** Path and query, already encoded as they go on the wire. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

/** Path segments sent as they are: traversal, bad escapes, NUL. */
const RAW_SEGMENTS = ["..", "../..", "%2e%2e", "..%2F..", "%2F", "a%00b", "%ff", "%", "%zz", ""];
/** Segments sent percent-encoded: unicode, controls, long, injection-shaped, number-shaped. */
const ODD_SEGMENTS = [
  "ünïcödé",
  "💥",
  "\u202egnp.exe",
  "a\u0000b",
  "a".repeat(300),
  "a".repeat(5000),
  " ",
  "x y",
  "<script>",
  "'; DROP TABLE certificates;--",
  "-lead",
  ".hidden",
  "CON",
  "null",
  "0",
  "-1",
  "99999999999999999999",
  "1e3",
  "\n",
];

/** Values that have the wrong type (or the wrong size) for almost any field. */
const ODD_VALUES: unknown[] = [
  null,
  0,
  -1,
  1e308,
  1.5,
  "",
  "x".repeat(10_000),
  [],
  {},
  true,
  "ünï💥",
  ["a", 1, null],
  { nested: { deeper: [1, 2, 3] } },
  "../../etc/passwd",
];

const BAD_JSON = [
  "{",
  "}",
  "[]",
  "null",
  '"str"',
  "1e999",
  '{"a":}',
  "\u0000",
  "{'a':1}",
  "NaN",
  '{"__proto__":{"polluted":true}}',
  '{"a":1,"a":2}',
];

const ODD_QUERY = ["-1", "abc", "1e9", "99999999999999999999", "", "💥", "%", "0x10", "1.5", " 1"];

/** A path segment: usually `valid`, sometimes (with probability `p`) a hostile one. */
export function segment(rng: Rng, valid: string, p = 0.25): string {
  if (!rng.chance(p)) return encodeURIComponent(valid);
  const roll = rng.int(4);
  if (roll === 0) return rng.pick(RAW_SEGMENTS);
  if (roll === 1) return encodeURIComponent(valid.toUpperCase() + rng.pick(["", "\n", " ", "/"]));
  return encodeURIComponent(rng.pick(ODD_SEGMENTS));
}

/** A method: usually `valid`. */
export function method(rng: Rng, valid: string, p = 0.08): string {
  return rng.chance(p) ? rng.pick(METHODS) : valid;
}

/** A query string from `valid` pairs, some values or names bent; "" for none. */
export function query(rng: Rng, valid: Record<string, string>, p = 0.3): string {
  const pairs = Object.entries(valid).map(([k, v]) => [k, rng.chance(p) ? rng.pick(ODD_QUERY) : v]);
  if (rng.chance(p / 3)) pairs.push([rng.pick(["limit", "offset", "q", "since", "wait"]), "-5"]);
  if (!pairs.length) return "";
  return "?" + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
}

/** The body of a JSON request: `valid` serialized, or (probability `p`) a mutation of it. */
export function jsonBody(rng: Rng, valid: unknown, p = 0.5): string {
  const text = JSON.stringify(valid);
  if (!rng.chance(p)) return text;
  const obj = valid && typeof valid === "object" && !Array.isArray(valid)
    ? { ...(valid as Record<string, unknown>) }
    : undefined;
  const keys = obj ? Object.keys(obj) : [];
  switch (rng.int(10)) {
    case 0: // a field missing
      if (obj && keys.length) delete obj[rng.pick(keys)];
      return JSON.stringify(obj ?? null);
    case 1:
    case 2: // a field of the wrong type or size
      if (obj && keys.length) obj[rng.pick(keys)] = rng.pick(ODD_VALUES);
      return JSON.stringify(obj ?? rng.pick(ODD_VALUES));
    case 3: // an unknown field
      return JSON.stringify({ ...obj, [rng.pick(["extra", "__proto__", "constructor", "ü"])]: 1 });
    case 4: // truncated
      return text.slice(0, rng.int(text.length));
    case 5:
      return rng.pick(BAD_JSON);
    case 6: // deeply nested, within the body limits
      return rng.chance(0.5) ? "[".repeat(20_000) + "]".repeat(20_000) : '{"a":'.repeat(8_000);
    case 7: // huge: past every body limit, rarely a megabyte
      return rng.chance(0.1) ? "x".repeat(1 << 20) : `{"pad":"${"x".repeat(70_000)}"}`;
    case 8: // binary garbage
      return String.fromCharCode(...Array.from({ length: rng.int(512) }, () => rng.int(256)));
    default:
      return "";
  }
}

/** A route the fuzzer exercises: its name (for the histogram) and how to make a request. */
export interface FuzzRoute<T> {
  name: string;
  /** Draws everything it needs from `rng` before its first await, so a seed reproduces it. */
  make(rng: Rng): T | Promise<T>;
}

/**
 * Outcome of one request: an HTTP status; a 5xx the server gives on purpose
 * as `"status code"` (such as `502 target_unreachable`); or a word for what
 * happened instead of an answer.
 */
export type Outcome = number | string;

/** Counts outcomes per route. */
export class Histogram {
  readonly byRoute = new Map<string, Map<Outcome, number>>();
  add(route: string, outcome: Outcome): void {
    const counts = this.byRoute.get(route) ?? new Map<Outcome, number>();
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    this.byRoute.set(route, counts);
  }
  /** Requests that reached the server (every outcome but `client-refused`). */
  sent(route: string): number {
    let n = 0;
    for (const [o, c] of this.byRoute.get(route) ?? []) if (o !== "client-refused") n += c;
    return n;
  }
  total(): number {
    let n = 0;
    for (const route of this.byRoute.keys()) n += this.sent(route);
    return n;
  }
  /** One line per route: `route  200:12 400:180 ...`. */
  format(): string {
    const width = Math.max(...[...this.byRoute.keys()].map((r) => r.length));
    return [...this.byRoute].map(([route, counts]) =>
      `${route.padEnd(width)}  ${
        [...counts].sort(([a], [b]) => String(a).localeCompare(String(b)))
          .map(([o, c]) => `${o}:${c}`).join(" ")
      }`
    ).join("\n");
  }
}

/**
 * Sends `perRoute` requests to every route, `concurrency` at a time, in an
 * order shuffled by the seed; request `i` of route `r` is made from its own
 * `Rng(seed, r, i)`. `send` returns the outcome of one request.
 */
export async function runFuzz<T>(opts: {
  seed: number;
  routes: FuzzRoute<T>[];
  perRoute: number;
  concurrency: number;
  send: (route: FuzzRoute<T>, request: T) => Promise<Outcome>;
  histogram: Histogram;
  /** Called after every `progressEvery` requests with the number sent so far. */
  onProgress?: (done: number, total: number) => void;
  progressEvery?: number;
}): Promise<void> {
  const jobs: [number, number][] = [];
  opts.routes.forEach((_, r) => {
    for (let i = 0; i < opts.perRoute; i++) jobs.push([r, i]);
  });
  const order = new Rng(opts.seed);
  for (let i = jobs.length - 1; i > 0; i--) {
    const j = order.int(i + 1);
    [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
  }
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const [r, i] = jobs[next++];
      const route = opts.routes[r];
      const rng = new Rng(
        (opts.seed ^ Math.imul(r + 1, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0,
      );
      opts.histogram.add(route.name, await opts.send(route, await route.make(rng)));
      if (opts.onProgress && ++done % (opts.progressEvery ?? 5000) === 0) {
        opts.onProgress(done, jobs.length);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
}

/** The seed from `ZTM_FUZZ_SEED`, or a fresh random one. */
export function fuzzSeed(): number {
  const env = Deno.env.get("ZTM_FUZZ_SEED");
  if (env && /^\d+$/.test(env)) return Number(env) >>> 0;
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
