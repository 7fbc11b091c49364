/**
 * The data plane's wire contract: how two agents reach each other through a
 * hub that only splices, and what they say inside their end-to-end TLS.
 *
 * Message flow (protocol version 2)
 *
 * 1. Pairing (control, HTTP/2 over mutual TLS, see `protocol.ts`). Caller A
 *    sends `POST /api/endpoints/{B}/services/tcp/{name}`. The hub checks that
 *    B is online and publishes the service, mints a ticket for B (bound to
 *    B's control session) and sends B `{type:"open", sid, service, from,
 *    ticket}`. B pre-checks what the message claims (the service exists, the
 *    claimed user may use it) and answers `{type:"accept", sid}` or
 *    `{type:"refuse", …}` without dialling anything. On `accept` the hub
 *    answers A `200 {"sid", "ticket"}` with a ticket bound to A's session;
 *    on `refuse` it passes on the status and error.
 *
 * 2. Splice (the hub's plain TCP data port, `welcome.hub.dataPort`). Each
 *    side dials the data port and writes the {@link PREAMBLE_BYTES}-byte
 *    preamble `ZTM2 <64 hex digits>\n`. The hub reads exactly that many bytes
 *    (never a byte of TLS), spends the ticket, and once both sides of `sid`
 *    arrived copies bytes both ways without looking at them. Nothing is
 *    ever sent back on the data port; a refused ticket is a closed socket.
 *
 * 3. End-to-end TLS 1.3 inside the splice. A is a TLS client that checks B's
 *    certificate against the mesh CA and the name {@link peerName}(B's
 *    user); B is the TLS server with its own user certificate (which carries
 *    serverAuth and that name; a hub certificate never does). Native TLS in
 *    Deno cannot present a client certificate, so A proves itself inside the
 *    channel: its first line is a {@link PeerHello} whose signature covers
 *    {@link proofText}. B answers with its own hello (its certificate, so A can
 *    check it against the CRL, and a signature over the same text). Both check
 *    chain, validity, role, the newest verified CRL and the name, and A that
 *    B's hello names the endpoint A asked for; a failed check closes the
 *    connection before any byte reaches a target.
 *
 * 4. Tunnels on a pair connection, one after another. Idle, the connection
 *    carries JSON lines: A writes {@link PeerOpen}; B checks the service's
 *    access for the user of A's certificate, connects to the target, and
 *    answers `opened` (then frames) or `error` (the connection stays idle).
 *    During a tunnel both directions carry frames: a 4-byte big-endian
 *    length, then that many bytes; length 0 ends that direction
 *    (`framedLeg` in `splice.ts`). After both end frames the connection goes
 *    back to A's pool and carries the next `open`: no hub work, no handshake,
 *    no ticket. A's first hello and first open go in one write, and so do
 *    B's answers, so a fresh pair costs one round trip after the handshake.
 *
 * 5. UDP flows (revision 2.1, {@link PEER_PROTOCOL_REVISION}). `open`
 *    with `proto:"udp"` (and `idleMs`, the caller's idle timeout) opens one
 *    datagram flow: one client address on A's side, one UDP socket toward
 *    the target on B's. B checks access once, on this `open`, before any
 *    datagram reaches the target. Both directions then carry datagram
 *    frames: the same 4-byte length, then one kind byte (0 = datagram) and
 *    the datagram, so a frame holds exactly one datagram (never split, never
 *    merged) and an empty datagram is the 1-byte frame `0`; length 0 still
 *    ends a direction. A frame longer than {@link MAX_DATAGRAM_BYTES} + 1,
 *    or of another kind, is a protocol error that closes the pair. Either
 *    side ends the flow after `idleMs` without a datagram either way (B
 *    caps it at {@link MAX_UDP_IDLE_MS}) by sending its end frame; the other
 *    answers with its own, and the pair goes back to A's pool. A provider
 *    without revision 2.1 answers `error` 404 `unknown_service` (it has no
 *    `udp/NAME`), so mixed meshes fail cleanly.
 *
 * Version history
 * - 1: the hub terminated TLS and relayed plaintext: HTTP/2 tunnel streams,
 *   `ztm-leg`/`ztm-ticket` headers, `ZTM1 <ticket>` inside TLS to the hub's
 *   data port, hub-side data links with a frame scanner.
 * - 2: this document. A version-1 agent is refused on the control port
 *   (`protocol_mismatch` naming both versions); a pair hello of another
 *   version is answered `error` `protocol_mismatch` naming both. Before
 *   its first release the proof text became a JSON array naming both
 *   endpoints (an attack review: a separator let fields shift, and a hello
 *   was good at any endpoint of the server's user); providers close pairs
 *   idle {@link PROVIDER_IDLE_MS} and cap pairs per caller user and in all.
 * - 2.1: `udp/NAME` services and UDP flows (step 5): `open` gains
 *   `proto:"udp"` and `idleMs`; datagram frames. Additive: hellos, TCP
 *   tunnels and the version number are unchanged.
 */

/** Version of the pair protocol (the same number as the control protocol). */
export const PEER_PROTOCOL_VERSION = 2;

/** Additions since the version was set (2.1: UDP flows, step 5 above). */
export const PEER_PROTOCOL_REVISION = 1;

/** Largest datagram a UDP flow carries (the largest IPv4 UDP payload). */
export const MAX_DATAGRAM_BYTES = 65_507;
/** Kind byte of a datagram frame. */
export const DATAGRAM_KIND = 0;
/** Default idle timeout of a UDP flow. */
export const UDP_IDLE_MS = 60_000;
/** Longest idle timeout a provider grants a UDP flow. */
export const MAX_UDP_IDLE_MS = 600_000;
/** Shortest idle timeout a provider grants (a caller asking less gets this). */
export const MIN_UDP_IDLE_MS = 100;

/** The preamble's fixed prefix. */
export const TICKET_PREFIX = "ZTM2 ";
/** A ticket: 32 random bytes as lower-case hex. */
export const TICKET_PATTERN = /^[0-9a-f]{64}$/;
/** Exact length of `ZTM2 <ticket>\n`. */
export const PREAMBLE_BYTES = TICKET_PREFIX.length + 64 + 1;

/** How long the hub waits for a data connection's preamble. */
export const TICKET_READ_MS = 5_000;
/** How long a spliced leg waits for its partner. */
export const PAIR_WAIT_MS = 10_000;
/** How long a minted ticket stays valid. */
export const TICKET_LIFETIME_MS = 10_000;
/** How long a TLS handshake and the hellos may take on a fresh pair. */
export const PAIR_HANDSHAKE_MS = 10_000;
/** Idle pair connections a caller keeps per peer (a burst of 32 parallel connections reuses them all). */
export const MAX_IDLE_PAIRS_PER_PEER = 32;
/** Pair connections (idle or busy) a caller may hold per peer. */
export const MAX_PAIRS_PER_PEER = 256;
/** An idle pair connection closes after this long. */
export const PAIR_IDLE_MS = 30_000;
/**
 * A provider closes a pair idle between tunnels this long (twice the caller's
 * idle time, so a caller never picks a pair its provider is closing; a
 * caller that keeps pairs forever cannot pin the provider's descriptors).
 */
export const PROVIDER_IDLE_MS = 2 * PAIR_IDLE_MS;
/** Pairs (idle or busy) a provider serves to one caller user, all its endpoints together. */
export const MAX_PAIRS_PER_CALLER = MAX_PAIRS_PER_PEER;
/** Pairs a provider serves or sets up at once, for all callers (each holds three descriptors). */
export const MAX_PROVIDER_PAIRS = 4 * MAX_PAIRS_PER_PEER;
/** Longest JSON line inside a pair connection. */
export const MAX_PEER_LINE_BYTES = 16 * 1024;
/** Refusals a provider answers per caller endpoint and window before it answers 429 without work. */
export const MAX_REFUSALS_PER_WINDOW = 20;
export const REFUSAL_WINDOW_MS = 10_000;

/** Suffix of peer names: under `.invalid` (RFC 6761), so no public CA can issue one. */
export const PEER_NAME_SUFFIX = "user.ztm.invalid";

/**
 * The TLS name of a user's endpoints: the user name's UTF-8 bytes in hex
 * (DNS compares names case-insensitively; user names are case-sensitive), in
 * labels of at most 60 digits, then {@link PEER_NAME_SUFFIX}. A later version
 * that gives each device its own certificate puts the endpoint in front
 * (`<endpoint hex>.e.<user hex…>.user.ztm.invalid`) without changing the pair
 * protocol: names are compared, never parsed.
 */
export function peerName(user: string): string {
  const hex = [...new TextEncoder().encode(user)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  const labels: string[] = [];
  for (let i = 0; i < hex.length; i += 60) labels.push(hex.slice(i, i + 60));
  return `${labels.join(".")}.${PEER_NAME_SUFFIX}`;
}

/** The preamble `ZTM2 <ticket>\n` as bytes. */
export function encodePreamble(ticket: string): Uint8Array {
  return new TextEncoder().encode(`${TICKET_PREFIX}${ticket}\n`);
}

/** The ticket in a preamble, or undefined when the bytes are anything else. */
export function parsePreamble(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength !== PREAMBLE_BYTES || bytes[PREAMBLE_BYTES - 1] !== 10) return undefined;
  const text = new TextDecoder().decode(bytes.subarray(0, PREAMBLE_BYTES - 1));
  if (!text.startsWith(TICKET_PREFIX)) return undefined;
  const ticket = text.slice(TICKET_PREFIX.length);
  return TICKET_PATTERN.test(ticket) ? ticket : undefined;
}

/**
 * What a hello's signature covers: both peer names, both endpoint ids and
 * the pair id. It names the server's user and endpoint, so a proof given to
 * one member, or to one endpoint of a user, is useless at another, and a
 * caller spliced to another endpoint of the user it asked for notices;
 * only its intended server ever sees it in plaintext.
 * The fields are a JSON array, never joined by a separator: the hub picks the
 * sid and the caller its endpoint, so with a separator a member given a proof
 * could shift another server's name out of the sid into the endpoint.
 */
export function proofText(
  callerName: string,
  callerEndpoint: string,
  serverName: string,
  serverEndpoint: string,
  sid: string,
): string {
  return JSON.stringify([
    `ztm-e2e-v${PEER_PROTOCOL_VERSION}`,
    callerName,
    callerEndpoint,
    serverName,
    serverEndpoint,
    sid,
  ]);
}

/** Each side's first line: its certificate (PEM) and an ECDSA-SHA256 signature (base64) over `proofText`. */
export interface PeerHello {
  type: "hello";
  version: number;
  endpoint: string;
  cert: string;
  sig: string;
}

/** What the caller writes on an idle pair connection. */
export type PeerRequest = PeerHello | PeerOpen;

/**
 * Opens a tunnel to service `proto/name` (a UDP flow for `udp`, step 5).
 * `to` only with {@link EXIT_SERVICE}:
 * where the exit should connect (checked against the exit's list by the
 * provider, never trusted).
 */
export interface PeerOpen {
  type: "open";
  proto: "tcp" | "udp";
  name: string;
  to?: { host: string; port: number };
  /** `udp` only (revision 2.1): the caller's idle timeout for the flow, ms. */
  idleMs?: number;
}

/** The service name under which an endpoint offers its exit (issue "Reach services by name"). */
export const EXIT_SERVICE = "exit";

/** What the provider answers. */
export type PeerAnswer =
  | PeerHello
  | { type: "opened" }
  | { type: "error"; status: number; code: string; message: string };

/** What the hub answers a caller's tunnel request. */
export interface PairTicket {
  sid: string;
  ticket: string;
}
