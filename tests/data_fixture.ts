/**
 * The data port spoken by hand (tests of tickets and data links): a mesh with
 * bob's real agent offering `tcp/echo` to alice, alice as a hand-built hub
 * client, and the frame helpers an agent's data connection uses.
 */
import assert from "node:assert/strict";
import { HUB_PATHS, LEG_HEADER, TICKET_HEADER } from "@ztm/shared/protocol";
import { errText } from "@ztm/shared/log";
import { withDeadline } from "./ca_helpers.ts";
import { type ApiBody, eventually, Harness, issueUser } from "./harness.ts";
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

/**
 * Asks for a tunnel to bob's echo with `ztm-leg: tls` and returns the hub's
 * caller ticket, once the echo server has counted bob's connection to it (the
 * provider connects to the target before it attaches, and the caller gets its
 * ticket only after that).
 */
export async function askTicket(
  f: DataFixture,
  echo: EchoServer,
  client = f.alice,
): Promise<string> {
  const before = echo.accepted;
  const opened = await client.openStream(
    HUB_PATHS.tunnel(f.bob.endpointId, "tcp", SERVICE),
    undefined,
    undefined,
    { [LEG_HEADER]: "tls" },
  );
  assert.equal(opened.status, 200, opened.text || opened.refused);
  opened.stream.on("error", () => {});
  opened.stream.resume();
  opened.stream.end();
  const ticket = opened.headers?.[TICKET_HEADER];
  assert.ok(typeof ticket === "string" && ticket.length > 0, `no ${TICKET_HEADER} header`);
  await eventually(() => echo.accepted === before + 1, 10_000, "bob's connection to the target");
  return ticket;
}

/** `ZTM1 <ticket>\n`, the first line of a data connection. */
export function hello(ticket: string): Uint8Array {
  return encoder.encode(`ZTM1 ${ticket}\n`);
}

/** A string shaped like a real ticket: 256 random bits, base64url without padding. */
export function randomTicket(): string {
  return btoa(String.fromCharCode(...randomBytes(32))).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
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

/** A TLS connection to the data port, trusting the mesh CA, as an agent dials it. */
export function dialData(f: DataFixture): Promise<Deno.TlsConn> {
  return Deno.connectTls({ hostname: "localhost", port: f.dataPort, caCerts: [f.caPem] });
}

/** Dials the data port and presents `ticket`; the connection is then the tunnel's caller leg. */
export async function presentTicket(f: DataFixture, ticket: string): Promise<Deno.TlsConn> {
  const conn = await dialData(f);
  try {
    await writeAll(conn, hello(ticket));
  } catch (err) {
    closeQuietly(conn);
    throw err;
  }
  return conn;
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
 * Sends `first` on a fresh TLS connection to the data port and asserts the
 * hub closes it without sending a byte back (a refused ticket).
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
