/**
 * A hand-built hub client for tests: a bare `node:http2` session over mutual
 * TLS that speaks the wire contract of `shared/protocol.ts` directly, without
 * the agent. Tests use it to present certificates the agent would never send,
 * to open control streams and tunnels by hand, and to drive many streams over
 * one session.
 *
 * A refusal at TLS level has no HTTP status: in TLS 1.3 the client's request
 * just ends without response headers. {@link HubClient.request}
 * reports that as `{ refused }` rather than throwing, so a test can assert
 * that a certificate never got an answer.
 *
 * @example
 * ```ts
 * await using client = HubClient.connect(hub.port, { ca, cert, key });
 * const reply = await client.request("GET", "/api/status");
 * assert.equal(reply.status, 200);
 * ```
 */
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
} from "node:http2";
import { errText } from "@ztm/shared/log";
import { HUB_PATHS, PROTOCOL_HEADER, PROTOCOL_VERSION } from "@ztm/shared/protocol";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";

/** How long one request may take before the test fails (a hang is a bug, not a refusal). */
export const REQUEST_TIMEOUT_MS = 10_000;

/** TLS material, PEM: the CA to trust the hub with, and the client's certificate and key. */
export interface ClientTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** TLS options for a hand-built client holding a user's certificate from the CA. */
export function userTls(files: { ca: string; certificate: string; privateKey: string }): ClientTls {
  return { ca: files.ca, cert: files.certificate, key: files.privateKey };
}

/** What came back for one request. */
export interface HubReply {
  /** The HTTP status, or undefined when the stream ended without response headers. */
  status: number | undefined;
  text: string;
  /** Why no response came (stream or session error, or none), when `status` is undefined. */
  refused?: string;
}

/** A control or tunnel stream that the hub answered. */
export interface OpenedStream {
  status: number | undefined;
  /** The live stream when the status is 200. */
  stream: ClientHttp2Stream;
  /** The body of a non-200 answer; empty for 200. */
  text: string;
  refused?: string;
  /** The response headers, when the hub answered. */
  headers?: IncomingHttpHeaders;
}

/** One HTTP/2 session to a hub. Not for concurrent `close()`; requests may run concurrently. */
export class HubClient implements AsyncDisposable {
  readonly session: ClientHttp2Session;
  /** Session errors seen so far, in order. */
  readonly errors: string[] = [];
  /** The client certificate, PEM, if it has one. */
  readonly cert: string | undefined;
  #streams = new Set<ClientHttp2Stream>();
  #gone = false;

  private constructor(session: ClientHttp2Session, cert: string | undefined) {
    this.session = session;
    this.cert = cert;
    session.on("error", (err) => this.errors.push(errText(err)));
    session.once("close", () => (this.#gone = true));
  }

  /** Dials `https://localhost:port` with `tls`; the session connects in the background. */
  static connect(port: number, tls: ClientTls): HubClient {
    return new HubClient(
      http2.connect(`https://localhost:${port}`, { ...tls, minVersion: "TLSv1.2" }),
      tls.cert,
    );
  }

  /**
   * Sends one request with `ztm-protocol: 2` (or `protocol`) and reads the
   * whole answer. Resolves `{ status: undefined, refused }` when the stream
   * closes without response headers; rejects only after `timeoutMs`.
   */
  request(
    method: string,
    path: string,
    opts: { protocol?: string; body?: string; timeoutMs?: number } = {},
  ): Promise<HubReply> {
    const stream = this.#open(method, path, opts.protocol, opts.body === undefined);
    if (typeof stream === "string") {
      return Promise.resolve({ status: undefined, text: "", refused: stream });
    }
    if (opts.body !== undefined) stream.end(opts.body);
    return this.#answer(stream, opts.timeoutMs ?? REQUEST_TIMEOUT_MS, true).then((o) => ({
      status: o.status,
      text: o.text,
      refused: o.refused,
    }));
  }

  /**
   * Opens a full-duplex `POST path` (with `headers` added to the request),
   * writes `first` if given, and resolves once the hub answers: with the live
   * stream for 200, else with the body; `headers` of the answer either way.
   */
  openStream(
    path: string,
    first?: string,
    timeoutMs = REQUEST_TIMEOUT_MS,
    headers: Record<string, string> = {},
  ): Promise<OpenedStream> {
    const stream = this.#open("POST", path, undefined, false, headers);
    if (typeof stream === "string") {
      return Promise.reject(new Error(`cannot open ${path}: ${stream}`));
    }
    if (first !== undefined) stream.write(first);
    return this.#answer(stream, timeoutMs, false);
  }

  /**
   * Registers the endpoint with `seed` (its id derived from this client's
   * certificate, or `opts.id` to name another) with a hello (no services, or
   * `opts.services`) and resolves with its id, the control stream and, for
   * 200, the hub's `welcome` line parsed.
   */
  async openControl(
    seed: string,
    name = "probe",
    opts: { id?: string; services?: unknown[] } = {},
  ): Promise<OpenedStream & { id: string; welcome?: Record<string, unknown> }> {
    const id = opts.id ?? endpointIdOfCertificate(this.cert ?? "", seed);
    const hello = JSON.stringify({
      type: "hello",
      name,
      seed,
      version: "t",
      services: opts.services ?? [],
    }) + "\n";
    const opened = await this.openStream(HUB_PATHS.control(id), hello);
    if (opened.status !== 200) return { ...opened, id };
    const line = await readLine(opened.stream);
    return { ...opened, id, welcome: JSON.parse(line) };
  }

  /** Opens a tunnel to `endpoint`'s service `tcp/name`. */
  openTunnel(endpoint: string, name: string): Promise<OpenedStream> {
    return this.openStream(HUB_PATHS.tunnel(endpoint, "tcp", name));
  }

  /**
   * Closes the session: streams still open (control streams the hub never
   * ends) are closed with NO_ERROR, then the session is closed gracefully
   * (GOAWAY) and destroyed if that takes over 5 s.
   */
  close(): Promise<void> {
    const s = this.session;
    if (this.#gone || s.destroyed) return Promise.resolve();
    for (const stream of this.#streams) if (!stream.closed && !stream.destroyed) stream.close();
    return new Promise((resolve) => {
      const timer = setTimeout(() => s.destroy(), 5_000);
      // Deno may emit `close` without calling `close()`'s callback, so wait for the event.
      s.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      s.close();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #open(
    method: string,
    path: string,
    protocol: string | undefined,
    endStream: boolean,
    headers: Record<string, string> = {},
  ): ClientHttp2Stream | string {
    if (this.session.destroyed || this.session.closed) {
      return `session already gone${this.errors.length ? `: ${this.errors.join("; ")}` : ""}`;
    }
    try {
      const stream = this.session.request({
        ...headers,
        ":method": method,
        ":path": path,
        [PROTOCOL_HEADER]: protocol ?? String(PROTOCOL_VERSION),
      }, { endStream });
      this.#streams.add(stream);
      stream.once("close", () => this.#streams.delete(stream));
      return stream;
    } catch (err) {
      return errText(err);
    }
  }

  #answer(stream: ClientHttp2Stream, timeoutMs: number, readAll: boolean): Promise<OpenedStream> {
    return new Promise((resolve, reject) => {
      let streamError: string | undefined;
      let status: number | undefined;
      let responseHeaders: IncomingHttpHeaders | undefined;
      const chunks: Uint8Array[] = [];
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new Error(`the hub neither answered nor closed the stream in ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (refused?: string) => {
        clearTimeout(timer);
        const text = new TextDecoder().decode(concat(chunks));
        resolve({ status, stream, text, refused, headers: responseHeaders });
      };
      stream.on("error", (err) => (streamError = errText(err)));
      stream.once("response", (headers) => {
        responseHeaders = headers;
        status = Number(headers[":status"]);
        if (status === 200 && !readAll) {
          done();
          return;
        }
        stream.on("data", (c: Uint8Array) => chunks.push(c));
        stream.once("end", () => done());
      });
      stream.once("close", () => {
        if (status !== undefined) {
          done(); // already resolved unless the body was cut short; `done` is idempotent for callers
          return;
        }
        const why = streamError ?? this.errors.at(-1) ??
          `stream closed without a response (rst code ${stream.rstCode ?? "none"})`;
        done(why);
      });
    });
  }
}

/** Reads one newline-terminated line from `stream` (the rest stays buffered in the stream's listeners). */
export function readLine(
  stream: ClientHttp2Stream,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const decoder = new TextDecoder();
    const finish = (err?: Error, line?: string) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("close", onClose);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (c: Uint8Array) => {
      buf += decoder.decode(c, { stream: true });
      const nl = buf.indexOf("\n");
      if (nl >= 0) finish(undefined, buf.slice(0, nl));
    };
    const onClose = () => finish(new Error(`stream closed before a line: ${JSON.stringify(buf)}`));
    const timer = setTimeout(() => finish(new Error(`no line in ${timeoutMs} ms`)), timeoutMs);
    stream.on("data", onData);
    stream.on("close", onClose);
  });
}

/** Parses a hub error body `{"error":{"code","message"}}`; returns the code, or undefined. */
export function errorCode(text: string): string | undefined {
  try {
    return JSON.parse(text).error?.code;
  } catch {
    return undefined;
  }
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
