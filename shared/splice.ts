/**
 * The data plane's one primitive: a `Leg` is one side of a relayed byte
 * stream (a native Deno TCP or TLS connection, or one tunnel's frames on a
 * pair connection), and `splice` copies two legs into each other.
 *
 * Backpressure is plain: each direction reads one chunk and awaits its write
 * before reading the next, so no leg ever holds more than one chunk in
 * flight. A clean end is passed on as a half-close (FIN, or an end frame),
 * so a side that shuts its write half can still be answered. An error on
 * either side tears down both.
 *
 * Native connections are read into a 256 KiB buffer: a Deno read/write loop
 * moves bytes about 1.5x faster than `pipeTo` or Node's `pipe` here.
 */

/** One side of a relayed byte stream. */
export interface Leg {
  /** The next chunk, or null once the peer has half-closed. The chunk is valid until the next read. */
  read(): Promise<Uint8Array | null>;
  /** Writes all of `chunk`, resolving once it is accepted (backpressure). */
  write(chunk: Uint8Array): Promise<void>;
  /** Half-closes: no more writes, reads go on. */
  closeWrite(): Promise<void>;
  /** Tears the leg down both ways (error path). Idempotent. */
  abort(): void;
  /** Releases the leg after both directions ended cleanly. Idempotent. */
  close(): void;
}

/** Buffer size for native reads. */
export const READ_BUFFER_BYTES = 256 * 1024;

/** Buffer size a native leg starts reading with; it doubles (up to `READ_BUFFER_BYTES`) while reads fill it. */
export const FIRST_READ_BUFFER_BYTES = 16 * 1024;

/**
 * A leg over a native Deno connection (TCP or TLS). Its read buffer starts
 * small and grows only while the peer keeps it full, so the many short
 * connections of a busy mapping do not each allocate a bulk-sized buffer.
 */
export function connLeg(conn: Deno.Conn): Leg {
  let buf = new Uint8Array(FIRST_READ_BUFFER_BYTES);
  let closed = false;
  const shut = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  return {
    async read() {
      const n = await conn.read(buf);
      if (n === null) return null;
      const chunk = buf.subarray(0, n);
      if (n === buf.byteLength && buf.byteLength < READ_BUFFER_BYTES) {
        buf = new Uint8Array(buf.byteLength * 2); // the old buffer stays with `chunk`
      }
      return chunk;
    },
    async write(chunk) {
      let at = 0;
      while (at < chunk.byteLength) at += await conn.write(chunk.subarray(at));
    },
    async closeWrite() {
      await conn.closeWrite();
    },
    abort: shut,
    close: shut,
  };
}

/** Byte counts of a finished splice. */
export interface SpliceResult {
  /** Bytes from `a` to `b`. */
  ab: number;
  /** Bytes from `b` to `a`. */
  ba: number;
  /** False when either side failed and both were torn down. */
  clean: boolean;
}

/** Copies `a` into `b` and `b` into `a` until both directions end (or either fails). */
export async function splice(a: Leg, b: Leg): Promise<SpliceResult> {
  let clean = true;
  const fail = () => {
    clean = false;
    a.abort();
    b.abort();
  };
  const copy = async (from: Leg, to: Leg): Promise<number> => {
    let n = 0;
    try {
      while (true) {
        const chunk = await from.read();
        if (chunk === null) break;
        await to.write(chunk);
        n += chunk.byteLength;
      }
    } catch {
      fail();
      return n;
    }
    try {
      await to.closeWrite();
    } catch {
      // The far side is already gone; the other direction finds out by itself.
    }
    return n;
  };
  const [ab, ba] = await Promise.all([copy(a, b), copy(b, a)]);
  if (clean) {
    a.close();
    b.close();
  }
  return { ab, ba, clean };
}

/** Largest payload of one frame on a framed data connection. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * A leg that carries a byte stream as frames over `base` — a 4-byte
 * big-endian length, then that many bytes; length 0 means "no more data this
 * way" — so a half-close travels in-band and the connection below is never
 * half-closed. Used on TLS data connections: TLS half-close (close_notify
 * one way) is poorly supported by peers and proxies, and in Deno 2.9.3 a
 * server-side TLS connection that called `closeWrite()` stopped reading what
 * was still on its way (seen with a `node:tls` client). Frames also leave the
 * way for reusing a connection for the next tunnel: `onEnd` gets the bytes
 * read past the end frame (valid only during the call). `close()` ends
 * `base` once both ways are done.
 */
export function framedLeg(base: Leg, onEnd?: (rest: Uint8Array) => void): Leg {
  let pending: Uint8Array = new Uint8Array(0);
  let remaining = 0;
  let eof = false;
  let frame = new Uint8Array(0);
  return {
    async read() {
      while (true) {
        if (eof) return null;
        if (remaining > 0 && pending.byteLength > 0) {
          const n = Math.min(remaining, pending.byteLength);
          const out = pending.subarray(0, n);
          pending = pending.subarray(n);
          remaining -= n;
          return out;
        }
        if (remaining === 0 && pending.byteLength >= 4) {
          const len = new DataView(pending.buffer, pending.byteOffset, 4).getUint32(0);
          pending = pending.subarray(4);
          if (len === 0) {
            eof = true;
            onEnd?.(pending);
            pending = new Uint8Array(0);
            return null;
          }
          if (len > MAX_FRAME_BYTES) throw new Error(`frame of ${len} bytes is over the limit`);
          remaining = len;
          continue;
        }
        // Here `pending` is empty or a header's first 1-3 bytes. Copy those before reading on:
        // `base` may reuse the buffer they sit in.
        if (pending.byteLength > 0) pending = pending.slice();
        const chunk = await base.read();
        if (chunk === null) throw new Error("data connection ended without its end frame");
        if (pending.byteLength === 0) {
          pending = chunk;
        } else {
          const joined = new Uint8Array(pending.byteLength + chunk.byteLength);
          joined.set(pending);
          joined.set(chunk, pending.byteLength);
          pending = joined;
        }
      }
    },
    async write(chunk) {
      for (let at = 0; at < chunk.byteLength; at += MAX_FRAME_BYTES) {
        const part = chunk.subarray(at, Math.min(chunk.byteLength, at + MAX_FRAME_BYTES));
        // One reused frame buffer: `base.write` is awaited before the next frame is built.
        if (frame.byteLength < 4 + part.byteLength) frame = new Uint8Array(4 + part.byteLength);
        new DataView(frame.buffer).setUint32(0, part.byteLength);
        frame.set(part, 4);
        await base.write(frame.subarray(0, 4 + part.byteLength));
      }
    },
    async closeWrite() {
      await base.write(new Uint8Array(4));
    },
    abort() {
      base.abort();
    },
    close() {
      base.close();
    },
  };
}
