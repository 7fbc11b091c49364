/**
 * Endpoint ids bound to a key and a seed: the hub recomputes them from a
 * session's certificate, so the derivation is a wire contract, checked here
 * against SHA-256 computed apart; seeds and names are refused where they
 * could be confused with ids or injected into messages.
 */
import assert from "node:assert/strict";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";
import { parseCertificate } from "./certs.ts";
import {
  ENDPOINT_ID_FORMAT,
  ENDPOINT_SEED_PATTERN,
  endpointIdOf,
  endpointIdOfCertificate,
  isEndpointName,
  newEndpointSeed,
} from "./endpoint_id.ts";

/** `ep-` and the first 32 hex digits of SHA-256("ztm endpoint id 1" NUL spki NUL seed), by WebCrypto. */
async function expectedId(spki: Uint8Array, seed: string): Promise<string> {
  const enc = new TextEncoder();
  const data = new Uint8Array([
    ...enc.encode("ztm endpoint id 1\0"),
    ...spki,
    0,
    ...enc.encode(seed),
  ]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return "ep-" + hash.toHex().slice(0, 32);
}

Deno.test("endpointIdOf is ep- and 128 bits of the domain-separated hash of key and seed", async () => {
  const spki = Uint8Array.from({ length: 91 }, (_, i) => i);
  const id = endpointIdOf(spki, "seed1");
  assert.match(id, ENDPOINT_ID_FORMAT);
  assert.equal(id, await expectedId(spki, "seed1"));
  assert.equal(endpointIdOf(spki.buffer, "seed1"), id, "an ArrayBuffer gives the same id");
  assert.notEqual(endpointIdOf(spki, "seed2"), id);
  const other = spki.slice();
  other[90] ^= 1;
  assert.notEqual(endpointIdOf(other, "seed1"), id);
  // The NUL between key and seed: a key byte cannot be moved into the seed.
  assert.notEqual(endpointIdOf(spki.subarray(0, 90), "Zseed1"), endpointIdOf(spki, "seed1"));
});

Deno.test("endpointIdOfCertificate uses the certificate's public key, not its other fields", async () => {
  const ca = await newCa();
  const leaf = await newLeaf(ca, { name: "alice" });
  const spki = new Uint8Array(parseCertificate(leaf.certificate).publicKey.rawData);
  const seed = newEndpointSeed();
  assert.equal(endpointIdOfCertificate(leaf.certificate, seed), await expectedId(spki, seed));
  // Another certificate (another key) of the same user is another endpoint.
  const second = await newLeaf(ca, { name: "alice" });
  assert.notEqual(
    endpointIdOfCertificate(second.certificate, seed),
    endpointIdOfCertificate(leaf.certificate, seed),
  );
  assert.throws(() => endpointIdOfCertificate("not a certificate", seed));
  assert.throws(() => endpointIdOfCertificate(leaf.certificate, ""), /Bad endpoint seed/);
});

Deno.test("endpointIdOf refuses seeds outside 1-64 of A-Za-z0-9_-", () => {
  const spki = new Uint8Array(65);
  for (const seed of ["a", "A-z_9", "x".repeat(64), "0123456789abcdef0123456789abcdef"]) {
    assert.match(endpointIdOf(spki, seed), ENDPOINT_ID_FORMAT, seed);
  }
  for (const seed of ["", "x".repeat(65), "a b", "a.b", "a/b", "a\nb", "a\0b", "é", "ep:1"]) {
    assert.throws(
      () => endpointIdOf(spki, seed),
      { message: /^Bad endpoint seed/ },
      JSON.stringify(seed),
    );
  }
  // The message quotes at most 80 characters of what it was given.
  assert.throws(
    () => endpointIdOf(spki, "!".repeat(1000)),
    (err: Error) => err.message.length < 120,
  );
});

Deno.test("newEndpointSeed makes 32 random hex digits, a valid seed each time", () => {
  const seeds = new Set(Array.from({ length: 100 }, () => newEndpointSeed()));
  assert.equal(seeds.size, 100);
  for (const s of seeds) {
    assert.match(s, /^[0-9a-f]{32}$/);
    assert.match(s, ENDPOINT_SEED_PATTERN);
  }
});

Deno.test("isEndpointName takes plain names and refuses the id form in any case", () => {
  for (
    const name of [
      "laptop",
      "Laptop-2",
      "a",
      "_x",
      "9",
      "a.b_c-d",
      "x".repeat(64),
      "ep-1",
      "ep-" + "0".repeat(31),
      "ep-" + "0".repeat(33),
      "ep-" + "g".repeat(32),
    ]
  ) {
    assert.ok(isEndpointName(name), name);
  }
  const id = endpointIdOf(new Uint8Array(65), "s");
  for (
    const name of [
      id,
      id.toUpperCase(),
      "Ep-" + id.slice(3),
      "",
      ".x",
      "-x",
      "x".repeat(65),
      "a b",
      "a/b",
      "é",
      "a\nb",
    ]
  ) {
    assert.ok(!isEndpointName(name), name);
  }
});
