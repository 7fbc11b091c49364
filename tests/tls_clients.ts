/**
 * Independent TLS clients for the hub's ports: `openssl s_client` (with its
 * `-msg` trace, so a test can tell the server's alert from the client's own
 * refusal) and `curl --http2`. They share nothing with ztm's code, so a
 * refusal they see is the server's doing.
 *
 * {@link opensslHubRequest} speaks just enough HTTP/2 over `s_client` to send
 * `GET /api/status`: the connection preface, an empty SETTINGS frame and one
 * HEADERS frame in HPACK literals. The hub's JSON answer travels as plain
 * text in a DATA frame, which is how an admitted session is recognised.
 */
import { join } from "node:path";
import { run } from "./harness.ts";
import type { ClientTls } from "./hub_client.ts";

/** Writes `tls` into `dir` as PEM files; returns their paths (the key 0600). */
export async function writeTlsFiles(
  dir: string,
  tls: ClientTls,
): Promise<{ ca: string; cert?: string; key?: string }> {
  const tag = crypto.randomUUID();
  const ca = join(dir, `${tag}-ca.crt`);
  await Deno.writeTextFile(ca, tls.ca);
  if (!tls.cert || !tls.key) return { ca };
  const cert = join(dir, `${tag}.crt`);
  const key = join(dir, `${tag}.key`);
  await Deno.writeTextFile(cert, tls.cert);
  await Deno.writeTextFile(key, tls.key, { mode: 0o600 });
  return { ca, cert, key };
}

/**
 * `curl --http2 GET path` on the hub with `ztm-protocol: 2`; returns curl's
 * exit code and the HTTP status it saw (0 when no response came).
 */
export async function curlHub(
  dir: string,
  port: number,
  tls: ClientTls,
  path = "/api/status",
): Promise<{ code: number; httpCode: number; stderr: string }> {
  const files = await writeTlsFiles(dir, tls);
  const args = ["--http2", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"];
  args.push("--cacert", files.ca);
  if (files.cert && files.key) args.push("--cert", files.cert, "--key", files.key);
  args.push("-H", "ztm-protocol: 2", `https://localhost:${port}${path}`);
  const out = await run("curl", args, { allowFail: true });
  return { code: out.code, httpCode: Number(out.stdout.trim() || "0"), stderr: out.stderr };
}

/** What `openssl s_client` saw. */
export interface OpensslResult {
  /** True when the hub's `/api/status` JSON came back: the session was admitted. */
  answered: boolean;
  /** True when s_client ended by itself (the server closed), false when the test stopped it. */
  closedByServer: boolean;
  /** Alerts received from the server (`<<<` lines of the `-msg` trace), e.g. `fatal decrypt_error`. */
  serverAlerts: string[];
  /** Everything s_client printed, for failure messages. */
  output: string;
}

const STATUS_ANSWER = /"protocol":\d/;
const DEADLINE_MS = 10_000;

function http2StatusRequest(): Uint8Array {
  const enc = new TextEncoder();
  const literal = (s: string) => [s.length, ...enc.encode(s)];
  const block = [
    0x82, // :method GET (static table 2)
    0x87, // :scheme https (7)
    0x04, // :path, literal without indexing, name from static table 4
    ...literal("/api/status"),
    0x01, // :authority (1)
    ...literal("localhost"),
    0x00, // ztm-protocol: 2, literal name and value
    ...literal("ztm-protocol"),
    ...literal("2"),
  ];
  const settings = [0, 0, 0, 0x04, 0, 0, 0, 0, 0];
  // HEADERS on stream 1 with END_STREAM | END_HEADERS.
  const headers = [0, 0, block.length, 0x01, 0x05, 0, 0, 0, 1, ...block];
  return new Uint8Array([
    ...enc.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ...settings,
    ...headers,
  ]);
}

/** The alerts an `s_client -msg` trace shows as received from the server. */
export function serverAlerts(trace: string): string[] {
  return [...trace.matchAll(/^<<< [^\n]*Alert[^\n]*?, (fatal|warning) ([a-z_]+)/gm)].map((m) =>
    `${m[1]} ${m[2]}`
  );
}

/**
 * Opens a TLS session to the hub with `openssl s_client` (extra `args` such
 * as `-tls1_2`), sends `GET /api/status` over HTTP/2 and waits until the
 * answer arrives or the server ends the connection.
 */
export async function opensslHubRequest(
  dir: string,
  port: number,
  tls: ClientTls,
  args: string[] = [],
): Promise<OpensslResult> {
  const files = await writeTlsFiles(dir, tls);
  const cmd = ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost"];
  cmd.push("-CAfile", files.ca, "-verify_return_error", "-alpn", "h2", "-msg", ...args);
  if (files.cert && files.key) cmd.push("-cert", files.cert, "-key", files.key);
  const child = new Deno.Command("openssl", {
    args: cmd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(http2StatusRequest()).catch(() => {}); // the server may have gone already
  let output = "";
  let answered = false;
  let exited = false;
  const status = child.status.then(() => (exited = true));
  const decoder = new TextDecoder("latin1");
  const readAll = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      if (!answered && STATUS_ANSWER.test(output)) {
        answered = true;
        child.kill("SIGTERM"); // admitted: the session would stay open
      }
    }
  };
  const timer = setTimeout(() => {
    if (!exited) child.kill("SIGKILL");
  }, DEADLINE_MS);
  await Promise.all([readAll(child.stdout), readAll(child.stderr), status]);
  clearTimeout(timer);
  await writer.close().catch(() => {});
  const closedByServer = !answered && exited && (await child.status).signal === null;
  return { answered, closedByServer, serverAlerts: serverAlerts(output), output };
}

/**
 * A bare TLS handshake with `openssl s_client -msg` and `args` (such as
 * `-tls1_1`), no request; returns the trace.
 */
export async function opensslHandshake(
  port: number,
  args: string[],
): Promise<{ code: number; trace: string }> {
  const out = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
    "-msg",
    ...args,
  ], { allowFail: true, stdin: "" });
  return { code: out.code, trace: out.stdout + out.stderr };
}
