/**
 * Bounded reads of a proxy client's handshake (a SOCKS5 greeting and
 * request, or an HTTP request head): exact byte counts and a head up to a
 * delimiter, never more than a fixed number of bytes buffered. Bytes read
 * past the handshake (a TLS ClientHello sent right behind `CONNECT`) stay in
 * `rest()` for the tunnel.
 */

/** The client's input broke the protocol; the message is safe to show. */
export class ProxyInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProxyInputError";
  }
}

/** Reads a connection's first bytes with bounds. Not for concurrent use. */
export class ConnReader {
  #conn: Deno.Conn;
  #buf: Uint8Array;
  #len = 0;

  /** `max` bounds what is ever buffered (an HTTP head, a SOCKS request). */
  constructor(conn: Deno.Conn, max: number) {
    this.#conn = conn;
    this.#buf = new Uint8Array(max);
  }

  /** Waits for at least one byte buffered; false at the end of input. */
  async #fill(): Promise<boolean> {
    if (this.#len === this.#buf.byteLength) {
      throw new ProxyInputError(`request longer than ${this.#buf.byteLength} bytes`);
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#len));
    if (n === null) return false;
    this.#len += n;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
    return out;
  }

  /** The first byte, not consumed; null if the client sent nothing. */
  async peek(): Promise<number | null> {
    if (this.#len === 0 && !(await this.#fill())) return null;
    return this.#buf[0];
  }

  /** Exactly `n` bytes. Throws `ProxyInputError` at an early end. */
  async exactly(n: number): Promise<Uint8Array> {
    while (this.#len < n) {
      if (!(await this.#fill())) throw new ProxyInputError("the request ended early");
    }
    return this.#take(n);
  }

  /**
   * Bytes up to and including `delim` (`\r\n\r\n` ends an HTTP head).
   * Throws `ProxyInputError` at an early end or when no `delim` comes within
   * the bound.
   */
  async through(delim: Uint8Array): Promise<Uint8Array> {
    let from = 0;
    while (true) {
      const at = indexOf(this.#buf.subarray(0, this.#len), delim, from);
      if (at >= 0) return this.#take(at + delim.byteLength);
      from = Math.max(0, this.#len - delim.byteLength + 1);
      if (!(await this.#fill())) throw new ProxyInputError("the request ended early");
    }
  }

  /** What was read past the handshake; empties the buffer. */
  rest(): Uint8Array {
    return this.#take(this.#len);
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i + needle.byteLength <= hay.byteLength; i++) {
    for (let j = 0; j < needle.byteLength; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}
