/**
 * The data port spoken by hand (tests of tickets and pairs): a mesh with
 * bob's real agent offering `tcp/echo` to alice, alice as a hand-built hub
 * client and end-to-end caller, and the frame helpers a pair connection uses.
 */
import assert from "node:assert/strict";
import { HUB_PATHS } from "@ztm/shared/protocol";
import {
  encodePreamble,
  type PeerAnswer,
  peerName,
  TICKET_PATTERN,
} from "@ztm/shared/peer_protocol";
import { checkHello, Signer } from "../agent/peer/identity.ts";
import { PairLink } from "../agent/peer/pair_link.ts";
import { errText } from "@ztm/shared/log";
import { withDeadline } from "./ca_helpers.ts";
import { type ApiBody, eventually, Harness, issueUser, type UserFiles } from "./harness.ts";
import { HubClient, userTls } from "./hub_client.ts";
import {
  addPortMapping,
  addService,
  type MeshAgent,
  startMeshOf,
  type TestMesh,
} from "./mesh_fixture.ts";
import {
  echoRoundTrip,
  type EchoServer,
  freePort,
  IO_TIMEOUT_MS,
  randomBytes,
} from "./net_helpers.ts";

export const SERVICE = "echo";
export const MIB = 1024 * 1024;
export const encoder = new TextEncoder();

/** A mesh with bob's agent offering `tcp/echo` to alice, and alice as a hand-built client. */
export interface DataFixture extends AsyncDisposable {
  mesh: TestMesh;
  bob: MeshAgent;
  /** Alice's session, with her endpoint registered over a control stream. */
  alice: HubClient;
  aliceFiles: UserFiles;
  caPem: string;
  dataPort: number;
}

/**
 * Starts CA, hub (`hubArgs` appended), bob's agent offering `tcp/echo` →
 * `echo`, and alice's hand-built client; waits until alice sees the service.
 */
export async function startDataFixture(
  h: Harness,
  echo: EchoServer,
  hubArgs: string[] = [],
): Promise<DataFixture> {
  const mesh = await startMeshOf(h, ["bob"], { hubArgs });
  const bob = mesh.agents.bob;
  await addService(bob, SERVICE, echo.port, ["alice"]);
  const files = await issueUser(mesh.ca.url, "alice");
  const alice = HubClient.connect(mesh.hub.port, userTls(files));
  const control = await alice.openControl("alice-hand", "alice-hand");
  assert.equal(control.status, 200, control.text || control.refused);
  control.stream.on("error", () => {});
  control.stream.on("data", () => {}); // CRL pushes and the like: read and discard
  await eventually(
    async () => {
      const reply = await alice.request("GET", `${HUB_PATHS.services}?q=${SERVICE}`);
      const items: ApiBody[] = JSON.parse(reply.text).items;
      return items.some((s) =>
        s.name === SERVICE &&
        s.providers.some((p: ApiBody) => p.endpoint === bob.endpointId && p.online)
      );
    },
    10_000,
    "bob's echo service listed online",
  );
  const dataPort = (await hubStatus(alice)).dataPort;
  assert.ok(Number.isInteger(dataPort) && dataPort > 0, `status dataPort: ${dataPort}`);
  return {
    mesh,
    bob,
    alice,
    aliceFiles: files,
    caPem: files.ca,
    dataPort,
    [Symbol.asyncDispose]: () => alice.close(),
  };
}

/** The hub's `GET /api/status` body, asked over `client`'s session. */
export async function hubStatus(client: HubClient): Promise<ApiBody> {
  const reply = await client.request("GET", HUB_PATHS.status);
  assert.equal(reply.status, 200, reply.text || reply.refused);
  return JSON.parse(reply.text);
}

/** What the hub answers a pair request: the pair id and the caller's ticket. */
export interface Granted {
  sid: string;
  ticket: string;
}

/**
 * Asks the hub for a pair to bob's echo over `client`'s session and returns
 * the caller's ticket (the provider pre-checked and accepted; it dials the
 * target only on an `open` inside the end-to-end TLS).
 */
export async function askTicket(f: DataFixture, client = f.alice): Promise<Granted> {
  const reply = await client.request("POST", HUB_PATHS.tunnel(f.bob.endpointId, "tcp", SERVICE));
  assert.equal(reply.status, 200, reply.text || reply.refused);
  const granted = JSON.parse(reply.text);
  assert.match(granted.ticket, TICKET_PATTERN);
  return granted;
}

/** `ZTM2 <ticket>\n`, the preamble of a data connection. */
export function hello(ticket: string): Uint8Array {
  return encodePreamble(ticket);
}

/** A string shaped like a real ticket: 256 random bits in hex. */
export function randomTicket(): string {
  return [...randomBytes(32)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.byteLength) at += await conn.write(data.subarray(at));
}

export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** A plain TCP connection to the data port, as an agent dials it. */
export async function dialData(f: DataFixture): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: f.dataPort });
  conn.setNoDelay(true);
  return conn;
}

/** Dials the data port and presents `ticket`; the connection is then spliced to its pair. */
export async function presentTicket(f: DataFixture, ticket: string): Promise<Deno.TcpConn> {
  const conn = await dialData(f);
  try {
    await writeAll(conn, hello(ticket));
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
  return conn;
}

/** Alice's signer for hand-built pairs (her certificate, endpoint `alice-hand`). */
export function aliceSigner(f: DataFixture): Signer {
  return new Signer({
    caPem: f.caPem,
    certPem: f.aliceFiles.certificate,
    keyPem: f.aliceFiles.privateKey,
    user: "alice",
    endpoint: "alice-hand",
  });
}

/**
 * A hand-built caller: presents the ticket, runs TLS end to end to bob
 * (checking his name under the mesh CA), sends the signer's hello and `open`,
 * and checks bob's hello. Resolves with the TLS connection, ready for frames.
 */
export async function openE2e(
  f: DataFixture,
  granted: Granted,
  signer = aliceSigner(f),
): Promise<Deno.TlsConn> {
  const tcp = await presentTicket(f, granted.ticket);
  const serverName = peerName("bob");
  const tls = await Deno.startTls(tcp, { hostname: serverName, caCerts: [f.caPem] });
  try {
    const link = new PairLink(tls);
    await link.writeMessages(
      await signer.hello(
        signer.name,
        signer.own.endpoint,
        serverName,
        f.bob.endpointId,
        granted.sid,
      ),
      { type: "open", proto: "tcp", name: SERVICE },
    );
    const first = await withDeadline(link.readMessage<PeerAnswer>(), IO_TIMEOUT_MS, "bob's hello");
    if (first?.type === "error") throw new Error(`${first.code}: ${first.message}`);
    await checkHello(first, {
      caPem: f.caPem,
      revoked: new Set(),
      role: "provider",
      user: "bob",
      serverName,
      serverEndpoint: f.bob.endpointId,
      callerName: signer.name,
      callerEndpoint: signer.own.endpoint,
      sid: granted.sid,
    });
    const opened = await withDeadline(link.readMessage<PeerAnswer>(), IO_TIMEOUT_MS, "opened");
    assert.equal(opened?.type, "opened", JSON.stringify(opened));
    return tls;
  } catch (err) {
    closeQuietly(tls);
    throw err;
  }
}

/** `data` as one frame of the data connection: a 4-byte big-endian length, then the bytes. */
export function frame(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.byteLength);
  new DataView(out.buffer).setUint32(0, data.byteLength);
  out.set(data, 4);
  return out;
}

/** The end frame: no more data this way (a half-close, carried in-band). */
export const END_FRAME = new Uint8Array(4);

/** Reads exactly `n` bytes; rejects on an early end. */
export async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`connection ended after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

/**
 * Writes `prefix` and `data` (as a frame) in one write while reading
 * `data.byteLength` payload bytes back out of the echoed frames; rejects on an
 * early end, an end frame, or after `timeoutMs`.
 */
export async function exchangeConn(
  conn: Deno.Conn,
  data: Uint8Array,
  timeoutMs = IO_TIMEOUT_MS,
  prefix: Uint8Array = new Uint8Array(),
): Promise<Uint8Array> {
  const out = new Uint8Array(data.byteLength);
  const reading = (async () => {
    let got = 0;
    while (got < out.byteLength) {
      const len = new DataView((await readExactly(conn, 4)).buffer).getUint32(0);
      if (len === 0) throw new Error(`end frame after ${got} of ${out.byteLength} bytes`);
      out.set(await readExactly(conn, len), got);
      got += len;
    }
  })();
  await withDeadline(
    Promise.all([reading, writeAll(conn, concat(prefix, frame(data)))]),
    timeoutMs,
    `the echo of ${data.byteLength} bytes`,
  );
  return out;
}

/** Reads until the peer ends (`error` unset) or the connection fails; returns the bytes read. */
export async function readToEnd(conn: Deno.Conn): Promise<{ bytes: number; error?: string }> {
  const buf = new Uint8Array(64 * 1024);
  let bytes = 0;
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return { bytes };
      bytes += n;
    }
  } catch (err) {
    return { bytes, error: errText(err) };
  }
}

/**
 * Sends `first` on a fresh connection to the data port and asserts the hub
 * closes it without sending a byte back (a refused ticket).
 */
export async function assertRefused(
  f: DataFixture,
  first: Uint8Array,
  what: string,
): Promise<void> {
  const conn = await dialData(f);
  try {
    await writeAll(conn, first).catch(() => {}); // the hub may close while we still write
    const end = await withDeadline(readToEnd(conn), IO_TIMEOUT_MS, `the hub closing ${what}`);
    assert.equal(end.bytes, 0, `${what}: ${end.bytes} bytes came back`);
  } finally {
    closeQuietly(conn);
  }
}

/**
 * Ends a working caller leg the way an agent does — an end frame, then the
 * echo's end frame back — and closes it.
 */
export async function finish(conn: Deno.Conn): Promise<void> {
  try {
    await writeAll(conn, END_FRAME);
    const back = await withDeadline(readExactly(conn, 4), IO_TIMEOUT_MS, "the tunnel's end frame");
    assert.deepEqual(back, END_FRAME, "the far side's end frame");
  } finally {
    closeQuietly(conn);
  }
}

/** Alice's agent maps a port to bob's echo; waits until a round trip works. */
export async function mappedEcho(m: TestMesh, echo: EchoServer): Promise<number> {
  await addService(m.agents.bob, SERVICE, echo.port, ["alice"]);
  const port = await freePort();
  await addPortMapping(m.agents.alice, port, SERVICE);
  await eventually(
    () => echoRoundTrip(port, 1024).then(() => true),
    15_000,
    "an echo through alice's port mapping",
  );
  return port;
}
