/**
 * The suite-wide check that no private key reaches a log: the harness
 * remembers every private key a test handles (issued through the CA's API,
 * made in-process, or found in a component's state when the test ends) and,
 * when it is disposed, looks for PEM key markers and for pieces of each key's
 * secret part in every line every process wrote.
 *
 * A key's secret part is looked for in the spellings a leak would take: as
 * base64 lines of its PEM (so a logged PEM or DER body is found even when
 * JSON escaping or wrapping splits it), and its private scalar as base64,
 * base64url (a JWK `d`) and hex. Only the scalar is probed, never the public
 * half, which certificates legitimately carry.
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

const KEY_MARKER = /PRIVATE KEY-----/;
const PEM_BLOCK = /-----BEGIN ([A-Z ]*PRIVATE KEY)-----([A-Za-z0-9+/=\s\\n]+?)-----END \1-----/g;
/** Shortest probe: 12 base64 characters are 72 bits of a random scalar. */
const MIN_PROBE = 12;
/** Files larger than this in a state dir are not read for keys. */
const MAX_STATE_FILE = 16 * 1024 * 1024;

/** Probe strings of every remembered key, by key (the first probe names the key in reports). */
const probes = new Map<string, string[]>();

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where the secret bytes of a DER private key are: an EC scalar if found, else its middle. */
function secretRange(der: Uint8Array): [number, number] {
  // ECPrivateKey: INTEGER 1, then OCTET STRING of 32 bytes (P-256).
  for (let i = 0; i + 37 <= der.length; i++) {
    if (
      der[i] === 0x02 && der[i + 1] === 0x01 && der[i + 2] === 0x01 && der[i + 3] === 0x04 &&
      der[i + 4] === 0x20
    ) {
      return [i + 5, i + 37];
    }
  }
  return [Math.floor(der.length / 3), Math.floor((2 * der.length) / 3)];
}

/** Remembers a DER private key (PKCS#8 or SEC1). */
export function rememberPrivateKeyDer(der: Uint8Array): void {
  const body = base64(der);
  if (probes.has(body)) return;
  const [start, end] = secretRange(der);
  const secret = der.subarray(start, end);
  const list: string[] = [];
  // Base64 characters that depend only on secret bytes, cut where a PEM wraps its lines.
  const from = Math.ceil((start * 4) / 3) + 1;
  const to = Math.floor((end * 4) / 3) - 1;
  for (let line = Math.floor(from / 64) * 64; line < to; line += 64) {
    const piece = body.slice(Math.max(from, line), Math.min(to, line + 64));
    if (piece.length >= MIN_PROBE) list.push(piece);
  }
  const b64 = base64(secret);
  list.push(b64.slice(0, 24));
  list.push(b64.replaceAll("+", "-").replaceAll("/", "_").slice(0, 24));
  list.push(hex(secret).slice(0, 32));
  probes.set(body, list);
}

/** Remembers every private key in PEM text (any number of blocks). */
export function rememberPrivateKey(pem: string): void {
  for (const m of pem.matchAll(PEM_BLOCK)) {
    const b64 = m[2].replaceAll("\\n", "").replace(/\s+/g, "");
    try {
      rememberPrivateKeyDer(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    } catch { /* not base64: nothing to remember */ }
  }
}

/**
 * Remembers the private keys found under `dir`: PEM blocks in any file (key
 * files, the agent's database) and the CA key in a CA database.
 */
export async function rememberSecretsIn(dir: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return; // removed already, or not a directory
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      await rememberSecretsIn(path);
      continue;
    }
    if (!e.isFile) continue;
    const info = await Deno.stat(path).catch(() => undefined);
    if (!info || info.size > MAX_STATE_FILE) continue;
    const bytes = await Deno.readFile(path).catch(() => undefined);
    if (!bytes) continue;
    rememberPrivateKey(new TextDecoder("latin1").decode(bytes));
    if (e.name.endsWith(".db")) rememberCaKey(path);
  }
}

function rememberCaKey(database: string): void {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(database, { readOnly: true });
    const row = db.prepare("SELECT private_key FROM ca").get() as
      | { private_key: Uint8Array }
      | undefined;
    if (row?.private_key) rememberPrivateKeyDer(new Uint8Array(row.private_key));
  } catch {
    /* not a CA database */
  } finally {
    db?.close();
  }
}

/** The output of one process, by name. */
export interface ProcessOutput {
  name: string;
  lines: string[];
}

/**
 * Lines that carry a PEM key marker or a piece of a remembered key, reported
 * as `process line N: what` — never the line itself, which holds the secret.
 */
export function keyLeaks(outputs: ProcessOutput[]): string[] {
  const all = [...probes.values()].flat();
  const found: string[] = [];
  for (const { name, lines } of outputs) {
    lines.forEach((line, i) => {
      if (KEY_MARKER.test(line)) {
        found.push(`${name} line ${i + 1}: a PEM private key marker`);
        return;
      }
      const hit = all.find((p) => line.includes(p));
      if (hit) found.push(`${name} line ${i + 1}: a piece of a private key the test knows`);
    });
  }
  return found;
}
