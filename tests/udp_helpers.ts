/**
 * UDP pieces for cross-component tests: an echo target and a tiny DNS server
 * (the "service targets" behind `udp/NAME` services), each counting what it
 * received, and a client socket with bounded waits. Loopback only; nothing
 * here stands in for a ztm component.
 */

/** A UDP target on 127.0.0.1 that counts datagrams and the source addresses they came from. */
export interface UdpTarget extends AsyncDisposable {
  port: number;
  /** Datagrams received so far (a denied user's must never move this). */
  readonly received: number;
  /** Distinct source addresses seen (one per provider-side session socket). */
  readonly sources: number;
  close(): Promise<void>;
}

function startTarget(answer: (d: Uint8Array) => Uint8Array | null): UdpTarget {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let received = 0;
  const sources = new Set<string>();
  let closed = false;
  const loop = (async () => {
    const buf = new Uint8Array(65_536);
    while (true) {
      let d: Uint8Array, from: Deno.Addr;
      try {
        [d, from] = await sock.receive(buf);
      } catch {
        if (closed) return;
        continue;
      }
      received++;
      const f = from as Deno.NetAddr;
      sources.add(`${f.hostname}:${f.port}`);
      const out = answer(d);
      if (out) await sock.send(out, from).catch(() => {});
    }
  })();
  const close = async () => {
    if (closed) return;
    closed = true;
    sock.close();
    await loop;
  };
  return {
    port: (sock.addr as Deno.NetAddr).port,
    get received() {
      return received;
    },
    get sources() {
      return sources.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Echoes each datagram back to its sender, unchanged. */
export function startUdpEcho(): UdpTarget {
  return startTarget((d) => d);
}

/** The A record the DNS server answers for `name`: 10.x.y.z from a hash of the name. */
export function addressFor(name: string): string {
  let h = 2166136261;
  for (const c of name.toLowerCase().replace(/\.$/, "")) {
    h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  }
  const b = [(h >>> 16) & 255, (h >>> 8) & 255, h & 255];
  return `10.${b.join(".")}`;
}

/**
 * A DNS server that answers every A/IN question with {@link addressFor} its
 * name (TTL 60), and anything else with NOTIMP.
 */
export function startDnsServer(): UdpTarget {
  return startTarget((q) => {
    if (q.byteLength < 17) return null;
    const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
    if (view.getUint16(4) !== 1) return null;
    let at = 12;
    const labels: string[] = [];
    while (at < q.byteLength && q[at] !== 0) {
      const n = q[at];
      if (n > 63 || at + 1 + n > q.byteLength) return null;
      labels.push(new TextDecoder().decode(q.subarray(at + 1, at + 1 + n)));
      at += 1 + n;
    }
    at++;
    if (at + 4 > q.byteLength) return null;
    const qtype = view.getUint16(at);
    const qclass = view.getUint16(at + 2);
    const question = q.subarray(12, at + 4);
    const ok = qtype === 1 && qclass === 1;
    const out = new Uint8Array(12 + question.byteLength + (ok ? 16 : 0));
    const o = new DataView(out.buffer);
    o.setUint16(0, view.getUint16(0)); // id
    o.setUint16(2, 0x8000 | (q[2] & 0x01) << 8 | 0x0400 | (ok ? 0 : 4)); // QR, RD copied, AA
    o.setUint16(4, 1);
    o.setUint16(6, ok ? 1 : 0);
    out.set(question, 12);
    if (ok) {
      let p = 12 + question.byteLength;
      o.setUint16(p, 0xc00c);
      o.setUint16(p + 2, 1);
      o.setUint16(p + 4, 1);
      o.setUint32(p + 6, 60);
      o.setUint16(p + 10, 4);
      p += 12;
      for (const part of addressFor(labels.join(".")).split(".")) out[p++] = Number(part);
    }
    return out;
  });
}

/** A client socket on 127.0.0.1 with bounded receives. */
export class UdpClient {
  sock: Deno.DatagramConn;
  /** A receive that outlived its wait: the next `receive` takes it over. */
  #pending: Promise<Uint8Array | null> | undefined;
  constructor() {
    this.sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  }

  send(d: Uint8Array, port: number): Promise<number> {
    return this.sock.send(d, { transport: "udp", hostname: "127.0.0.1", port });
  }

  /** The next datagram, or null after `ms`. */
  async receive(ms = 5_000): Promise<Uint8Array | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = this.#pending ?? this.sock.receive().then(([d]) => d, () => null);
    this.#pending = got;
    const out = await Promise.race([
      got,
      new Promise<null>((r) => (timer = setTimeout(() => r(null), ms))),
    ]);
    clearTimeout(timer);
    if (out !== null) this.#pending = undefined;
    return out;
  }

  /** Sends `d` and waits for one reply (null after `ms`). */
  async ask(d: Uint8Array, port: number, ms = 5_000): Promise<Uint8Array | null> {
    await this.send(d, port);
    return await this.receive(ms);
  }

  close(): void {
    try {
      this.sock.close();
    } catch { /* already closed */ }
  }
}
