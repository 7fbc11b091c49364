/**
 * Seeded mutations of the messages a hub sends an agent (control lines and
 * data-link lines), for the hostile-hub fuzz test: fields deleted, replaced
 * by values of the wrong type or size, the type changed, the JSON text cut,
 * flipped, padded with bytes that are not UTF-8, or nested very deep. Each
 * case is a function of the seed and its index, so a failure names the case
 * that shows it.
 */

/** A small fast PRNG (mulberry32): the same seed gives the same cases. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const caller = { endpoint: "e-1", user: "alice" };

/** Well-formed control lines of every kind a hub sends. */
export function controlBases(service: string): Json[] {
  return [
    {
      type: "open",
      sid: "s-1",
      service: { proto: "tcp", name: "nosuch" },
      from: caller,
      ticket: "1".repeat(64),
    },
    {
      type: "open",
      sid: "s-2",
      service: { proto: "tcp", name: service },
      from: { endpoint: "e-1", user: "nobody" },
      ticket: "2".repeat(64),
    },
    {
      type: "manage",
      rid: "r-1",
      request: {
        method: "GET",
        path: "services",
        body: "",
        target: "t",
        from: "f",
        nonce: "n",
        expires: 1,
        certificate: "c",
        signature: "s",
      },
      from: caller,
    },
    { type: "crl", pem: "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n" },
    { type: "error", code: "oops", message: "Something" },
    { type: "welcome", endpoint: { id: "x" }, hub: { version: "1", dataPort: 1 } },
  ];
}

const HOSTILE: Json[] = [
  null,
  true,
  0,
  -1,
  1e308,
  0.5,
  "",
  "x".repeat(5000),
  "../../etc",
  "\u0000",
  [],
  [1, 2],
  {},
  JSON.parse(`{"__proto__":{"polluted":true}}`),
  { constructor: { prototype: { polluted: true } } },
  { proto: "udp", name: "" },
  { endpoint: 1, user: [] },
];

const TYPES = [
  "open",
  "manage",
  "crl",
  "error",
  "welcome",
  "incoming",
  "opened",
  "",
  "OPEN",
  "__proto__",
  "constructor",
  "hello",
];

function pick<T>(rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)];
}

/** The objects inside `v` (itself included), for picking where to mutate. */
function objects(v: Json, out: { [k: string]: Json }[] = []): { [k: string]: Json }[] {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    out.push(v);
    for (const x of Object.values(v)) objects(x, out);
  }
  return out;
}

function mutateValue(rand: () => number, msg: Json): void {
  const targets = objects(msg);
  const o = pick(rand, targets);
  const keys = Object.keys(o);
  const r = rand();
  if (r < 0.35 && keys.length) delete o[pick(rand, keys)];
  else if (r < 0.8 && keys.length) o[pick(rand, keys)] = structuredClone(pick(rand, HOSTILE));
  else if (r < 0.9) (msg as { [k: string]: Json }).type = pick(rand, TYPES);
  else o[`extra${Math.floor(rand() * 9)}`] = structuredClone(pick(rand, HOSTILE));
}

const encoder = new TextEncoder();

function mutateText(rand: () => number, text: string): Uint8Array {
  const bytes = encoder.encode(text);
  const r = rand();
  if (r < 0.3) return bytes.slice(0, Math.floor(rand() * bytes.length)); // cut short
  if (r < 0.55) {
    const out = bytes.slice();
    for (let i = 0; i < 1 + rand() * 4; i++) {
      out[Math.floor(rand() * out.length)] = Math.floor(rand() * 256) || 1;
    }
    return out.map((b) => (b === 10 ? 11 : b)); // no newline inside a line
  }
  if (r < 0.7) {
    const at = Math.floor(rand() * bytes.length);
    const junk = Uint8Array.from(
      { length: 1 + Math.floor(rand() * 8) },
      () => 0x80 + (rand() * 0x7f | 0),
    );
    return new Uint8Array([...bytes.subarray(0, at), ...junk, ...bytes.subarray(at)]);
  }
  if (r < 0.8) return encoder.encode(pick(rand, [`[${text}]`, `"${text.length}"`, "42", "null"]));
  if (r < 0.9) {
    const depth = 500 + Math.floor(rand() * 5000);
    return encoder.encode(`{"type":"open","from":${"[".repeat(depth)}${"]".repeat(depth)}}`);
  }
  return encoder.encode(
    text.replace(/"type":"[^"]*"/, `"type":${JSON.stringify(pick(rand, TYPES))}`),
  );
}

/**
 * The `i`-th mutated line (without its newline) of `bases` under `seed`:
 * one to three value mutations, and in about a third of cases a text mutation on top.
 */
export function mutatedLine(seed: number, i: number, bases: Json[]): Uint8Array {
  const rand = prng(seed * 1_000_003 + i);
  const msg = structuredClone(pick(rand, bases));
  const n = 1 + Math.floor(rand() * 3);
  for (let k = 0; k < n; k++) mutateValue(rand, msg);
  const text = JSON.stringify(msg);
  return rand() < 0.35 ? mutateText(rand, text) : encoder.encode(text);
}
