/**
 * A pair connection's byte stream, read through one buffer that lines and
 * frames share: between tunnels it carries JSON lines (hellos, `open`,
 * `opened`, `error`), during one only frames (see `shared/peer_protocol.ts`).
 * Bytes read past a tunnel's end frame belong to the next exchange and are
 * kept (`unread`). A link is never shared by two tunnels at once, and any
 * protocol error closes it. Single reader at a time.
 */
import { agentError } from "@ztm/shared/agent_api";
import { parseMessage } from "@ztm/shared/protocol";
import { MAX_PEER_LINE_BYTES, type PeerAnswer, type PeerRequest } from "@ztm/shared/peer_protocol";
import {
  type DatagramLeg,
  datagramLeg,
  framedLeg,
  type Leg,
  READ_BUFFER_BYTES,
} from "@ztm/shared/splice";

const EMPTY = new Uint8Array(0);
const FIRST_BUFFER_BYTES = 16 * 1024;

/** A pair connection (the end-to-end TLS stream) with its read buffer. */
export class PairLink {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(FIRST_BUFFER_BYTES);
  /** Bytes read but not yet consumed (a copy owned by the link). */
  #pending: Uint8Array = EMPTY;
  #closed = false;
  #encoder = new TextEncoder();

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next line, parsed as a JSON object with a string `type`; null when
   * the peer closed at a line boundary. Throws `BadRequest` on garbage or an
   * overlong line, or whatever `check` throws.
   */
  async readMessage<T extends { type: string }>(
    check?: (value: { type: string } & Record<string, unknown>) => T,
  ): Promise<T | null> {
    while (true) {
      const nl = this.#pending.indexOf(10);
      if (nl >= 0) {
        const line = new TextDecoder().decode(this.#pending.subarray(0, nl));
        this.#pending = this.#pending.subarray(nl + 1);
        const value = parseMessage<{ type: string } & Record<string, unknown>>(line);
        return check ? check(value) : value as unknown as T;
      }
      if (this.#pending.byteLength > MAX_PEER_LINE_BYTES) {
        throw agentError("peer_line_too_large", "Pair connection line is too long");
      }
      const chunk = await this.#read();
      if (chunk === null) {
        if (this.#pending.byteLength) throw agentError("bad_peer_line", "Truncated line");
        return null;
      }
      this.#pending = join(this.#pending, chunk);
    }
  }

  /** Writes JSON lines in one write (so two small messages never meet Nagle apart). */
  async writeMessages(...msgs: (PeerRequest | PeerAnswer)[]): Promise<void> {
    const text = msgs.map((m) => JSON.stringify(m) + "\n").join("");
    await writeAll(this.conn, this.#encoder.encode(text));
  }

  /** Puts back bytes that belong to the next exchange (read past a tunnel's end frame). */
  unread(bytes: Uint8Array): void {
    if (bytes.byteLength) this.#pending = join(bytes, this.#pending);
  }

  /**
   * One tunnel's frames over this link as a `Leg`; bytes past the end frame
   * stay for the next exchange. `close()` keeps the connection (it may carry
   * another tunnel); `abort()` closes it.
   */
  framed(): Leg {
    return framedLeg(this.#base(), (rest) => this.unread(rest));
  }

  /** One UDP flow's datagram frames over this link (protocol 2.1); otherwise as `framed()`. */
  datagrams(): DatagramLeg {
    return datagramLeg(this.#base(), (rest) => this.unread(rest));
  }

  #base(): Leg {
    return {
      read: () => {
        if (this.#pending.byteLength) {
          const chunk = this.#pending;
          this.#pending = EMPTY;
          return Promise.resolve(chunk);
        }
        return this.#read();
      },
      write: (chunk) => writeAll(this.conn, chunk),
      closeWrite: () => Promise.resolve(),
      abort: () => this.close(),
      close: () => {},
    };
  }

  /** Closes the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** One read into the growing buffer; the chunk is valid until the next read. */
  async #read(): Promise<Uint8Array | null> {
    const n = await this.conn.read(this.#buf);
    if (n === null) return null;
    const chunk = this.#buf.subarray(0, n);
    if (n === this.#buf.byteLength && this.#buf.byteLength < READ_BUFFER_BYTES) {
      this.#buf = new Uint8Array(this.#buf.byteLength * 2); // the old buffer stays with `chunk`
    }
    return chunk;
  }
}

/** Writes all of `bytes` (a native write may take only part). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b.slice();
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
