/**
 * Plain TCP pieces for cross-component tests: an echo server that counts the
 * connections it accepts (the "service target" behind a ztm service), and a
 * client that sends bytes through a port mapping or tunnel and reads them back.
 *
 * They use `node:net` over loopback only; nothing here stands in for a ztm
 * component. Every wait has a deadline, so a broken data path fails a test
 * instead of hanging it.
 *
 * @example
 * ```ts
 * await using echo = await startEchoServer();
 * const conn = await openConnection(echo.port);
 * assert.deepEqual(await conn.exchange(randomBytes(1024)), ...);
 * conn.close();
 * ```
 */
import net from "node:net";
import type { Duplex } from "node:stream";

/** Default deadline for one read or connect, ms. */
export const IO_TIMEOUT_MS = 10_000;

/** A TCP echo server on 127.0.0.1 that counts accepted connections. */
export interface EchoServer extends AsyncDisposable {
  /** The bound port. */
  port: number;
  /** Connections accepted so far (a refused tunnel must never move this). */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  /** Bytes read from all connections so far (a refused tunnel must never move this either). */
  readonly received: number;
  /** Closes the listener and every accepted connection. */
  close(): Promise<void>;
}

/**
 * Starts an echo server on `127.0.0.1:0` (or `port`). Each accepted socket
 * writes back what it reads and half-closes when its peer does.
 */
export function startEchoServer(port = 0): Promise<EchoServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let received = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => {}); // a peer reset is a normal end here
    socket.on("close", () => sockets.delete(socket));
    socket.on("data", (chunk: Uint8Array) => (received += chunk.byteLength));
    socket.pipe(socket);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port }, () => {
      server.off("error", reject);
      const bound = (server.address() as net.AddressInfo).port;
      const close = () =>
        new Promise<void>((done) => {
          for (const s of sockets) s.destroy();
          server.close(() => done());
        });
      resolve({
        port: bound,
        get accepted() {
          return accepted;
        },
        get open() {
          return sockets.size;
        },
        get received() {
          return received;
        },
        close,
        [Symbol.asyncDispose]: close,
      });
    });
  });
}

/** A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** `n` random bytes (in 64 KiB slices, the most `getRandomValues` fills at once). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65_536) {
    crypto.getRandomValues(out.subarray(at, Math.min(n, at + 65_536)));
  }
  return out;
}

/**
 * Writes `data` to `stream` (a socket or an HTTP/2 stream) and resolves with
 * the first `data.length` bytes read back. Rejects when the stream ends or
 * closes first, or after `timeoutMs`. Only one exchange may run on a stream at
 * a time.
 */
export function exchange(
  stream: Duplex,
  data: Uint8Array,
  timeoutMs = IO_TIMEOUT_MS,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const out = new Uint8Array(data.length);
    let got = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
      stream.off("error", onError);
      if (err) reject(err);
      else resolve(out);
    };
    const onData = (chunk: Uint8Array) => {
      const take = Math.min(chunk.length, data.length - got);
      out.set(chunk.subarray(0, take), got);
      got += take;
      if (got === data.length) finish();
    };
    const onEnd = () => finish(new Error(`stream ended after ${got} of ${data.length} bytes`));
    const onClose = () => finish(new Error(`stream closed after ${got} of ${data.length} bytes`));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () => finish(new Error(`read ${got} of ${data.length} echoed bytes in ${timeoutMs} ms`)),
      timeoutMs,
    );
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onClose);
    stream.on("error", onError);
    if (data.length === 0) finish();
    else stream.write(data);
  });
}

/** A live client TCP connection, for tests that keep one open across an event. */
export interface Connection {
  socket: net.Socket;
  /** Writes `data` and resolves with as many bytes read back (see {@link exchange}). */
  exchange(data: Uint8Array, timeoutMs?: number): Promise<Uint8Array>;
  /** Resolves when the peer has ended or the socket has closed, whichever comes first. */
  readonly ended: Promise<"end" | "close">;
  /** Destroys the socket. */
  close(): void;
}

/** Connects to `127.0.0.1:port`; rejects on a connect error or after `timeoutMs`. */
export function openConnection(port: number, timeoutMs = IO_TIMEOUT_MS): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to 127.0.0.1:${port} not done in ${timeoutMs} ms`));
    }, timeoutMs);
    const ended = new Promise<"end" | "close">((done) => {
      socket.once("end", () => done("end"));
      socket.once("close", () => done("close"));
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err); // no effect once connected; `ended` reports the close
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({
        socket,
        exchange: (data, ms) => exchange(socket, data, ms),
        ended,
        close: () => socket.destroy(),
      });
    });
  });
}

/**
 * Opens a connection to `port`, sends `n` random bytes, checks that the same
 * bytes come back, and closes it. Throws on any difference, early end or timeout.
 */
export async function echoRoundTrip(port: number, n = 64 * 1024): Promise<void> {
  const conn = await openConnection(port);
  try {
    const data = randomBytes(n);
    const back = await conn.exchange(data);
    if (!equalBytes(back, data)) throw new Error(`echo through port ${port} returned other bytes`);
  } finally {
    conn.close();
  }
}

/** True when `a` and `b` hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
