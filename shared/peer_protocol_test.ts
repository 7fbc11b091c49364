/**
 * The pair protocol's pure parts: peer names, the data-port preamble the hub
 * reads from untrusted sockets, and the text a hello signs. The frames inside
 * a pair are tested with `splice.ts`; the handshake end to end in
 * `agent/peer/`.
 */
import assert from "node:assert/strict";
import {
  encodePreamble,
  MAX_UDP_IDLE_MS,
  MIN_UDP_IDLE_MS,
  PAIR_IDLE_MS,
  parsePreamble,
  PEER_NAME_SUFFIX,
  PEER_PROTOCOL_VERSION,
  peerName,
  PREAMBLE_BYTES,
  proofText,
  PROVIDER_IDLE_MS,
  TICKET_PREFIX,
  UDP_IDLE_MS,
} from "./peer_protocol.ts";

const TICKET = "0123456789abcdef".repeat(4);
const encoder = new TextEncoder();

Deno.test("a preamble is ZTM2, a space, 64 hex digits and a newline, and parses back to its ticket", () => {
  const bytes = encodePreamble(TICKET);
  assert.equal(PREAMBLE_BYTES, 70);
  assert.equal(bytes.byteLength, PREAMBLE_BYTES);
  assert.equal(new TextDecoder().decode(bytes), `ZTM2 ${TICKET}\n`);
  assert.equal(parsePreamble(bytes), TICKET);
});

Deno.test("parsePreamble refuses every other byte string of any length", () => {
  const bad = [
    new Uint8Array(0),
    encodePreamble(TICKET).subarray(0, PREAMBLE_BYTES - 1),
    encoder.encode(`ZTM2 ${TICKET}\n\n`),
    encoder.encode(`ZTM2 ${TICKET}\r`),
    encoder.encode(`ZTM1 ${TICKET}\n`),
    encoder.encode(`ztm2 ${TICKET}\n`),
    encoder.encode(`ZTM2 ${TICKET.toUpperCase()}\n`),
    encoder.encode(`ZTM2 ${TICKET.slice(1)}g\n`),
    encoder.encode(`ZTM2  ${TICKET.slice(1)}\n`),
    encoder.encode(`ZTM2 ${TICKET.slice(2)}é\n`), // 70 bytes, not hex
    // The first bytes of a TLS ClientHello, padded to the preamble's length.
    Uint8Array.from({ length: PREAMBLE_BYTES }, (_, i) => [0x16, 0x03, 0x01][i] ?? 0),
  ];
  for (const bytes of bad) {
    assert.equal(parsePreamble(bytes), undefined, new TextDecoder().decode(bytes));
  }
  // Every single-bit flip of a good preamble is refused or still names a 64-hex-digit ticket.
  const good = encodePreamble(TICKET);
  for (let i = 0; i < good.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const m = good.slice();
      m[i] ^= 1 << bit;
      const ticket = parsePreamble(m);
      if (ticket !== undefined) {
        assert.ok(i >= TICKET_PREFIX.length && i < PREAMBLE_BYTES - 1, `byte ${i}`);
        assert.match(ticket, /^[0-9a-f]{64}$/);
        assert.notEqual(ticket, TICKET);
      }
    }
  }
});

Deno.test("peerName is the user's UTF-8 in hex labels of at most 60 digits under user.ztm.invalid", () => {
  assert.equal(PEER_NAME_SUFFIX, "user.ztm.invalid");
  assert.equal(peerName("alice"), "616c696365.user.ztm.invalid");
  // User names are case-sensitive; DNS names are not, so hex keeps them apart.
  assert.notEqual(peerName("Alice").toLowerCase(), peerName("alice").toLowerCase());
  assert.equal(peerName("é"), "c3a9.user.ztm.invalid");
  const long = peerName("x".repeat(64));
  const labels = long.split(".").slice(0, -3);
  assert.deepEqual(labels.map((l) => l.length), [60, 60, 8]);
  assert.equal(labels.join(""), "78".repeat(64));
  // The longest user name the CA issues (64 characters) stays a valid DNS name.
  for (const name of ["a", "x".repeat(30), "x".repeat(31), "x".repeat(64)]) {
    const n = peerName(name);
    assert.ok(n.length <= 253, name);
    for (const label of n.split(".")) assert.ok(label.length >= 1 && label.length <= 63, n);
    assert.match(n, /^[0-9a-f.]+\.user\.ztm\.invalid$/);
  }
});

Deno.test("proofText is a JSON array with the version, so no field can shift into another", () => {
  const text = proofText("a.user.ztm.invalid", "ep-a", "b.user.ztm.invalid", "ep-b", "sid1");
  assert.deepEqual(JSON.parse(text), [
    `ztm-e2e-v${PEER_PROTOCOL_VERSION}`,
    "a.user.ztm.invalid",
    "ep-a",
    "b.user.ztm.invalid",
    "ep-b",
    "sid1",
  ]);
  // Moving text across a field boundary (what a separator would allow) changes what is signed.
  const variants = [
    proofText("a", "b|c", "d", "e", "f"),
    proofText("a|b", "c", "d", "e", "f"),
    proofText("a", "b", "c|d", "e", "f"),
    proofText("a", "b", "c", "d|e", "f"),
    proofText("a", "b", "c", "d", "e|f"),
    proofText("a", "b", "c", "d", 'e","f'),
    proofText("a", "b", "c", 'd","e', "f"),
  ];
  assert.equal(new Set(variants).size, variants.length);
  // Caller and server swapped is another proof.
  assert.notEqual(
    proofText("a", "ep-a", "b", "ep-b", "s"),
    proofText("b", "ep-b", "a", "ep-a", "s"),
  );
});

Deno.test("the pair protocol's timeouts keep their stated order", () => {
  // A caller never picks a pair its provider is closing.
  assert.equal(PROVIDER_IDLE_MS, 2 * PAIR_IDLE_MS);
  assert.ok(MIN_UDP_IDLE_MS <= UDP_IDLE_MS && UDP_IDLE_MS <= MAX_UDP_IDLE_MS);
});
