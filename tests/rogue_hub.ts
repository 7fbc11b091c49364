/**
 * A hand-built rogue hub for tests: it holds a real hub certificate of its
 * own mesh CA (made with `test_pki.ts`), so an agent that joins that mesh
 * accepts it, and then it says whatever the test wants — on the control
 * stream, on its data port, and in answers to the agent's requests. It speaks
 * just enough of `shared/protocol.ts` to get there: `GET /api/crl` (503: no
 * CRL yet), the control stream (it answers `hello` with `welcome`), and a TLS
 * plain TCP data port that reads a `ZTM2 <ticket>` preamble (`peer_protocol.ts`);
 * every other request goes to `onRequest`.
 *
 * @example
 * ```ts
 * await using hub = await RogueHub.start();
 * const control = await hub.nextControl();
 * control.write('{"type":"open"}\n');
 * ```
 */
import http2, {
  type Http2SecureServer,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { parsePreamble, peerName, PREAMBLE_BYTES } from "@ztm/shared/peer_protocol";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { newCa, newLeaf, type TestCa } from "./test_pki.ts";

/** The agent's control stream, as the rogue hub holds it. */
export interface RogueControl {
  stream: ServerHttp2Stream;
  /** The endpoint id in the control path. */
  endpointId: string;
  /** Lines the agent sent (its hello first), parsed. */
  lines: Record<string, unknown>[];
  /** Writes one line (a newline is added). */
  write(line: string): void;
  /** Resolves with the first line from the agent after `from` that `pred` accepts. */
  waitFor(
    pred: (msg: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

/** A data connection the agent opened to the rogue data port, after its preamble. */
export interface RogueDataConn {
  conn: Deno.TcpConn;
  ticket: string;
}

/** Answers any request the rogue hub does not handle itself. */
export type RogueHandler = (
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  body: string,
) => void;

/** A rogue hub on 127.0.0.1 with a control port and a data port. */
export class RogueHub implements AsyncDisposable {
  readonly ca: TestCa;
  readonly port: number;
  readonly dataPort: number;
  /** What the agents are told in `welcome.hub.dataPort` (undefined: no data port). */
  offerDataPort = true;
  /** Requests other than the CRL and control streams. */
  onRequest: RogueHandler = (stream) => {
    stream.respond({ ":status": 404, "content-type": "application/json" });
    stream.end(JSON.stringify({ error: { code: "not_found", message: "Not here" } }));
  };
  /** Data connections, each once its preamble arrived. */
  onData: (conn: RogueDataConn) => void = ({ conn }) => conn.close();
  #server: Http2SecureServer;
  #data: Deno.TcpListener;
  #controls: RogueControl[] = [];
  #controlWaiters: ((c: RogueControl) => void)[] = [];

  private constructor(ca: TestCa, server: Http2SecureServer, port: number, data: Deno.TcpListener) {
    this.ca = ca;
    this.#server = server;
    this.port = port;
    this.#data = data;
    this.dataPort = (data.addr as Deno.NetAddr).port;
    server.on("stream", (stream, headers) => this.#stream(stream, headers));
    this.#acceptData();
  }

  /** Starts a rogue hub with a new CA and a hub (serverAuth) certificate naming 127.0.0.1. */
  static async start(): Promise<RogueHub> {
    const ca = await newCa();
    const leaf = await newLeaf(ca, {
      name: "hub",
      role: "server",
      altNames: ["localhost", "127.0.0.1"],
    });
    const server = http2.createSecureServer({
      cert: leaf.certificate,
      key: leaf.privateKey,
      ca: ca.pem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    });
    server.on("sessionError", () => {});
    const port = await new Promise<number>((resolve) => {
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
    });
    const data = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return new RogueHub(ca, server, port, data);
  }

  /** `127.0.0.1:port`, for an agent's bootstraps. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** A user certificate of this hub's CA (able to call and provide), for an agent to join with. */
  user(name: string): Promise<{ certificate: string; privateKey: string }> {
    return newLeaf(this.ca, { name, role: "peer", altNames: [peerName(name)] });
  }

  /** Resolves with the next control stream an agent opens (after its hello was welcomed). */
  nextControl(): Promise<RogueControl> {
    const ready = this.#controls.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.#controlWaiters.push(resolve));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#data.close();
    } catch { /* already closed */ }
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      // Sessions of agents still connected would keep `close` waiting.
      setTimeout(resolve, 2_000);
    });
  }

  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", () => {});
    const path = String(headers[":path"]);
    if (path === HUB_PATHS.crl) {
      stream.respond({ ":status": 503, "content-type": "application/json" });
      stream.end(JSON.stringify({ error: { code: "no_crl", message: "No CRL yet" } }));
      return;
    }
    const control = path.match(/^\/api\/endpoints\/([^/]+)\/control$/);
    if (control) {
      this.#control(stream, decodeURIComponent(control[1]));
      return;
    }
    const chunks: Uint8Array[] = [];
    stream.on("data", (c: Uint8Array) => chunks.push(c));
    stream.once("end", () => {
      const body = new TextDecoder().decode(concat(chunks));
      if (stream.destroyed || stream.closed) return;
      try {
        this.onRequest(stream, headers, body);
      } catch {
        try {
          if (!stream.headersSent) stream.respond({ ":status": 500 });
          stream.end();
        } catch { /* the agent reset it */ }
      }
    });
  }

  #control(stream: ServerHttp2Stream, endpointId: string): void {
    stream.respond({ ":status": 200, "content-type": "application/x-ndjson" });
    const lines: Record<string, unknown>[] = [];
    const waiters = new Set<() => void>();
    let buf = "";
    let welcomed = false;
    const c: RogueControl = {
      stream,
      endpointId,
      lines,
      write: (line) => {
        if (!stream.destroyed && !stream.closed) stream.write(line + "\n");
      },
      waitFor: (pred, timeoutMs = 15_000) =>
        new Promise((resolve, reject) => {
          let at = 0;
          const check = () => {
            for (; at < lines.length; at++) {
              if (!pred(lines[at])) continue;
              clearTimeout(timer);
              waiters.delete(check);
              resolve(lines[at]);
              return;
            }
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            reject(new Error(`no such line from the agent in ${timeoutMs} ms`));
          }, timeoutMs);
          waiters.add(check);
          check();
        }),
    };
    const decoder = new TextDecoder();
    stream.on("data", (chunk: Uint8Array) => {
      buf += decoder.decode(chunk, { stream: true });
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      for (const part of parts) {
        if (!part.trim()) continue;
        lines.push(JSON.parse(part));
        if (!welcomed) {
          welcomed = true;
          c.write(JSON.stringify({
            type: "welcome",
            endpoint: { id: endpointId },
            hub: { version: "rogue", dataPort: this.offerDataPort ? this.dataPort : undefined },
          }));
          const waiter = this.#controlWaiters.shift();
          if (waiter) waiter(c);
          else this.#controls.push(c);
        }
      }
      for (const w of [...waiters]) w();
    });
  }

  async #acceptData(): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#data.accept();
      } catch {
        return; // closed
      }
      readPreamble(conn).then((ticket) => {
        if (ticket) this.onData({ conn, ticket });
        else conn.close();
      }, () => {
        try {
          conn.close();
        } catch { /* already closed */ }
      });
    }
  }
}

/** Reads the `ZTM2 <ticket>\n` preamble; undefined when it is anything else or the agent closes first. */
async function readPreamble(conn: Deno.Conn): Promise<string | undefined> {
  const buf = new Uint8Array(PREAMBLE_BYTES);
  let got = 0;
  while (got < buf.byteLength) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) return undefined;
    got += n;
  }
  return parsePreamble(buf);
}

/** Reads from `conn` until `want` bytes have arrived past `have` (or the connection ends). */
export async function readUntil(
  conn: Deno.Conn,
  have: Uint8Array,
  done: (bytes: Uint8Array) => boolean,
): Promise<Uint8Array | null> {
  let buf: Uint8Array = have;
  const chunk = new Uint8Array(16 * 1024);
  while (!done(buf)) {
    const n = await conn.read(chunk);
    if (n === null) return null;
    buf = concat([buf, chunk.subarray(0, n)]);
  }
  return buf;
}

/** Writes all of `bytes`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.byteLength) at += await conn.write(bytes.subarray(at));
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
