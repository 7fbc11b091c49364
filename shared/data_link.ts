/**
 * A data link: a TLS connection between an agent and the hub's data port
 * that outlives one tunnel. A connection attaches to its first tunnel with a
 * ticket (`ZTM1 <ticket>`); once that tunnel ended cleanly in both
 * directions (an end frame each way, see `framedLeg`), the connection stays
 * bound to the control session whose ticket it presented and carries the
 * next tunnel without a new handshake, ticket or HTTP/2 request:
 *
 * - a caller's link (`out`): the agent writes `{"type":"open",…}`; the hub
 *   answers `{"type":"opened"}` and the link carries frames, or
 *   `{"type":"error",…}` and the link stays idle;
 * - a provider's link (`in`): parked at the hub, which writes
 *   `{"type":"incoming",…}` when a tunnel to this endpoint opens; the agent
 *   answers `{"type":"accept"}` (then frames) or `{"type":"refuse",…}`.
 *
 * Between tunnels a link carries only these JSON lines; during one, only
 * frames. Bytes that arrive right after a tunnel's end frame belong to the
 * next exchange and are kept (`unread`). A link is never shared between two
 * tunnels at once, and any protocol error closes it.
 */
import { framedLeg, type Leg, READ_BUFFER_BYTES } from "./splice.ts";
import { BadRequest } from "./errors.ts";
import { type LinkMessage, type LinkRequest, parseMessage } from "./protocol.ts";

/** Longest JSON line on an idle link. */
export const MAX_LINK_LINE_BYTES = 16 * 1024;

const EMPTY = new Uint8Array(0);
const FIRST_BUFFER_BYTES = 16 * 1024;

/** A connection read through a buffer that lines and frames share. Single reader at a time. */
export class DataLink {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(FIRST_BUFFER_BYTES);
  /** Bytes read but not yet consumed (a copy owned by the link). */
  #pending: Uint8Array;
  #closed = false;
  #encoder = new TextEncoder();

  /** `rest`: bytes already read from `conn` after its ticket line. */
  constructor(conn: Deno.Conn, rest: Uint8Array = EMPTY) {
    this.conn = conn;
    this.#pending = rest.byteLength ? rest.slice() : EMPTY;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next line, parsed as a JSON object with a string `type`; null when
   * the peer closed at a line boundary. Throws `BadRequest` on garbage or an
   * overlong line, or whatever `check` (e.g. `checkLinkMessage`) throws.
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
      if (this.#pending.byteLength > MAX_LINK_LINE_BYTES) {
        throw new BadRequest("link_line_too_large", "Data link line is too long");
      }
      const chunk = await this.#read();
      if (chunk === null) {
        if (this.#pending.byteLength) throw new BadRequest("bad_link_line", "Truncated line");
        return null;
      }
      this.#pending = join(this.#pending, chunk);
    }
  }

  /** Writes one JSON line. */
  async writeMessage(msg: LinkRequest | LinkMessage): Promise<void> {
    await writeAll(this.conn, this.#encoder.encode(JSON.stringify(msg) + "\n"));
  }

  /** Puts back bytes that belong to the next exchange (read past a tunnel's end frame). */
  unread(bytes: Uint8Array): void {
    if (bytes.byteLength) this.#pending = join(bytes, this.#pending);
  }

  /**
   * The link's byte stream as a `Leg` (buffered bytes first) for one tunnel.
   * `close()` keeps the connection (the link may carry another tunnel);
   * `abort()` closes it; half-closes travel as frames, so `closeWrite` is a no-op.
   */
  leg(): Leg {
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

  /** The link's byte stream carrying one tunnel's frames; bytes past the end frame stay for the next exchange. */
  framed(): Leg {
    return framedLeg(this.leg(), (rest) => this.unread(rest));
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
