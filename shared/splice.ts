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

import { DATAGRAM_KIND, MAX_DATAGRAM_BYTES } from "./peer_protocol.ts";

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
        // Here `pending` is empty or a header's first 1-3 bytes.
        pending = await readOn(base, pending);
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
    ...framedEnd(base),
  };
}

/** A datagram leg that can also write several datagrams in one write of the connection below. */
export interface DatagramLeg extends Leg {
  /**
   * Writes `datagrams` (each at most `MAX_DATAGRAM_BYTES`, else `RangeError`
   * before anything is sent) as consecutive frames in one write: a busy
   * flow costs one TLS record and one syscall per batch, not per datagram.
   */
  writeBatch(datagrams: Uint8Array[]): Promise<void>;
}

/**
 * A leg that carries datagrams over `base` (a UDP flow, protocol 2.1):
 * each `write` is one frame (4-byte length, kind byte 0, the datagram) and
 * each `read` returns one whole datagram (valid until the next read), so
 * boundaries are kept and an empty datagram is a 1-byte frame. Length 0 ends
 * the direction as in {@link framedLeg}, and `onEnd` gets the bytes read past
 * it. A frame over `MAX_DATAGRAM_BYTES` + 1 or of another kind throws (the
 * pair is then closed); `write` of a datagram over the limit throws
 * `RangeError` before anything is sent (callers drop and count it first).
 */
export function datagramLeg(base: Leg, onEnd?: (rest: Uint8Array) => void): DatagramLeg {
  let pending: Uint8Array = new Uint8Array(0);
  let eof = false;
  let frame = new Uint8Array(5 + 2048);
  /** Bytes of a frame split over reads, assembled here. */
  let assembled = new Uint8Array(0);
  const more = async (): Promise<void> => {
    pending = await readOn(base, pending);
  };
  return {
    async read() {
      if (eof) return null;
      while (pending.byteLength < 4) await more();
      const len = new DataView(pending.buffer, pending.byteOffset, 4).getUint32(0);
      if (len === 0) {
        eof = true;
        onEnd?.(pending.subarray(4));
        pending = new Uint8Array(0);
        return null;
      }
      if (len > MAX_DATAGRAM_BYTES + 1) throw new Error(`datagram frame of ${len} bytes`);
      if (pending.byteLength >= 4 + len) {
        if (pending[4] !== DATAGRAM_KIND) throw new Error(`frame of unknown kind ${pending[4]}`);
        const out = pending.subarray(5, 4 + len);
        pending = pending.subarray(4 + len);
        return out;
      }
      // The frame spans reads: gather it in its own buffer (reused; the result is valid until
      // the next read).
      if (assembled.byteLength < len) assembled = new Uint8Array(Math.max(len, 2048));
      let have = pending.byteLength - 4;
      assembled.set(pending.subarray(4));
      pending = new Uint8Array(0);
      while (have < len) {
        const chunk = await base.read();
        if (chunk === null) throw new Error("data connection ended inside a datagram frame");
        const take = Math.min(len - have, chunk.byteLength);
        assembled.set(chunk.subarray(0, take), have);
        have += take;
        if (take < chunk.byteLength) pending = chunk.subarray(take).slice();
      }
      if (assembled[0] !== DATAGRAM_KIND) throw new Error(`frame of unknown kind ${assembled[0]}`);
      return assembled.subarray(1, len);
    },
    async write(datagram) {
      if (datagram.byteLength > MAX_DATAGRAM_BYTES) {
        throw new RangeError(`datagram of ${datagram.byteLength} bytes is over the limit`);
      }
      const n = 5 + datagram.byteLength;
      // One reused frame buffer: `base.write` is awaited before the next frame is built.
      if (frame.byteLength < n) frame = new Uint8Array(n);
      new DataView(frame.buffer).setUint32(0, 1 + datagram.byteLength);
      frame[4] = DATAGRAM_KIND;
      frame.set(datagram, 5);
      await base.write(frame.subarray(0, n));
    },
    async writeBatch(datagrams: Uint8Array[]) {
      let n = 0;
      for (const d of datagrams) {
        if (d.byteLength > MAX_DATAGRAM_BYTES) {
          throw new RangeError(`datagram of ${d.byteLength} bytes is over the limit`);
        }
        n += 5 + d.byteLength;
      }
      if (frame.byteLength < n) frame = new Uint8Array(n);
      const view = new DataView(frame.buffer);
      let at = 0;
      for (const d of datagrams) {
        view.setUint32(at, 1 + d.byteLength);
        frame[at + 4] = DATAGRAM_KIND;
        frame.set(d, at + 5);
        at += 5 + d.byteLength;
      }
      await base.write(frame.subarray(0, n));
    },
    ...framedEnd(base),
  };
}

/**
 * `pending` followed by the next chunk of `base`, for a frame reader that
 * needs more bytes. `pending` is copied before reading on: `base` may reuse
 * the buffer it sits in. Throws when `base` ends: a framed direction ends with
 * its end frame.
 */
async function readOn(base: Leg, pending: Uint8Array): Promise<Uint8Array> {
  if (pending.byteLength > 0) pending = pending.slice();
  const chunk = await base.read();
  if (chunk === null) throw new Error("data connection ended without its end frame");
  if (pending.byteLength === 0) return chunk;
  const joined = new Uint8Array(pending.byteLength + chunk.byteLength);
  joined.set(pending);
  joined.set(chunk, pending.byteLength);
  return joined;
}

/**
 * How a framed leg over `base` ends: `closeWrite` sends the end frame (length
 * 0), `abort` and `close` go to `base`.
 */
function framedEnd(base: Leg): Pick<Leg, "closeWrite" | "abort" | "close"> {
  return {
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
