/**
 * The benchmark's TCP target, run as its own process so its work does not
 * share a JavaScript thread with the load or the orchestrator.
 *
 * The first byte of a connection picks its mode:
 * - `S` (sink): every byte is read and dropped; when the client half-closes,
 *   the server answers with the byte count (mode byte included) as decimal
 *   text and closes. The client checks it, so lost bytes show.
 * - `E` (echo): every byte (mode byte included) is written back, with Nagle
 *   off; the server closes when the client does.
 * Anything else closes the connection.
 *
 * Native `Deno.listen`/`Conn` with a 256 KiB read buffer: measured faster
 * than `node:net` or `pipeTo` on loopback. Logs one JSON line
 * `{"msg":"listening","addr":"127.0.0.1:PORT"}` on stderr, as ztm components
 * do, so the test harness can start it.
 *
 *   deno run --allow-net bench/echo_server.ts [--listen=127.0.0.1:0]
 */
import { parseCommandLine } from "@ztm/shared/flags";

const BUFFER_BYTES = 256 * 1024;
const SINK = 0x53; // "S"
const ECHO = 0x45; // "E"

/** Writes all of `bytes` (a `Conn.write` may take only part). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await conn.write(bytes.subarray(off));
}

/** Serves one connection in the mode its first byte selects; never throws. */
export async function serveConnection(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(BUFFER_BYTES);
  try {
    let n = await conn.read(buf);
    if (n === null || n === 0) return;
    if (buf[0] === SINK) {
      let total = n;
      while ((n = await conn.read(buf)) !== null) total += n;
      await writeAll(conn, new TextEncoder().encode(`${total}\n`));
    } else if (buf[0] === ECHO) {
      conn.setNoDelay(true);
      while (n !== null) {
        await writeAll(conn, buf.subarray(0, n));
        n = await conn.read(buf);
      }
    }
  } catch {
    // A client that resets or vanishes only ends its own connection.
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** Accepts connections on `listener` until it is closed; each is served concurrently. */
export async function serveEcho(listener: Deno.TcpListener): Promise<void> {
  try {
    for await (const conn of listener) void serveConnection(conn);
  } catch {
    // The listener was closed.
  }
}

if (import.meta.main) {
  const flags = parseCommandLine({
    name: "bench/echo_server.ts",
    summary: "The benchmark's sink and echo server (first byte S = sink, E = echo).",
    flags: [{
      name: "listen",
      kind: "address",
      default: "127.0.0.1:0",
      help: "address to listen on (loopback)",
    }],
  }, Deno.args);
  const listener = Deno.listen({ transport: "tcp", ...flags.address("listen") });
  const addr = listener.addr as Deno.NetAddr;
  console.error(
    JSON.stringify({ level: "info", msg: "listening", addr: `${addr.hostname}:${addr.port}` }),
  );
  await serveEcho(listener);
}
