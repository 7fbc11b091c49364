/**
 * Endpoint ids bound to a key: `ep-` and 32 hex digits of
 * SHA-256("ztm endpoint id 1" NUL, SPKI, NUL, seed), where SPKI is the DER
 * public key of the certificate the endpoint's session presents and `seed`
 * a per-endpoint value its agent picks at join (16 random bytes in hex) and
 * sends in its `hello`. The hub recomputes the id from the session's own
 * certificate, so only the holder of that key can register it, before or
 * after a hub restart; several endpoints sharing one certificate (a user's)
 * differ by their seeds, and a device with its own certificate works alike.
 *
 * Endpoint names never take this form ({@link isEndpointName}), so an id and a
 * name cannot be confused in a lookup.
 *
 * @example
 * ```ts
 * const seed = newEndpointSeed();
 * const id = endpointIdOf(parseCertificate(certPem).publicKey.rawData, seed);
 * ```
 */
import { createHash } from "node:crypto";
import { parseCertificate } from "./certs.ts";
import { ENDPOINT_ID_PATTERN, NAME_PATTERN } from "./protocol.ts";

/** Endpoint ids: `ep-` and 32 lower-case hex digits (128 bits of the hash). */
export const ENDPOINT_ID_FORMAT: RegExp = ENDPOINT_ID_PATTERN;
/** A seed: 1–64 of `A-Za-z0-9_-` (agents write 32 hex digits; an upgraded agent keeps its old id here). */
export const ENDPOINT_SEED_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const DOMAIN = new TextEncoder().encode("ztm endpoint id 1\0");

/** The id of the endpoint with public key `spki` (DER) and `seed`. Throws on a bad seed. */
export function endpointIdOf(spki: ArrayBuffer | Uint8Array, seed: string): string {
  if (!ENDPOINT_SEED_PATTERN.test(seed)) {
    throw new Error(`Bad endpoint seed "${seed.slice(0, 80)}"`);
  }
  const hash = createHash("sha256")
    .update(DOMAIN)
    .update(new Uint8Array(spki))
    .update(new Uint8Array([0]))
    .update(seed)
    .digest("hex");
  return `ep-${hash.slice(0, 32)}`;
}

/** The id of the endpoint holding certificate `certPem` with `seed`. Throws on a bad PEM or seed. */
export function endpointIdOfCertificate(certPem: string, seed: string): string {
  return endpointIdOf(parseCertificate(certPem).publicKey.rawData, seed);
}

/** A fresh random seed (32 hex digits). */
export function newEndpointSeed(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `name` is a valid endpoint name: `NAME_PATTERN`, and not in the id format in any case. */
export function isEndpointName(name: string): boolean {
  return NAME_PATTERN.test(name) && !ENDPOINT_ID_FORMAT.test(name.toLowerCase());
}
