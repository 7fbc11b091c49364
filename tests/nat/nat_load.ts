/**
 * The home client in the NAT lab: opens `--connections` TCP connections at
 * once to `--port` on 127.0.0.1 (a port mapping), sends one HTTP/1.1
 * `POST /echo` of `--bytes` random bytes on each (`Connection: close`),
 * reads each answer to its end and checks the body is the same bytes.
 *
 * Prints one JSON line: `{ok, failed, errors, peers, maxOpen, bytes, ms}` —
 * `peers` counts the distinct client addresses the service saw, `maxOpen`
 * the most connections it had open at once. Exits 0 even when some failed:
 * the test decides.
 */
import net from "node:net";
import { parseArgs } from "node:util";
import { equalBytes, randomBytes } from "../fixtures/net_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string" },
    connections: { type: "string", default: "100" },
    bytes: { type: "string", default: "65536" },
  },
});
const port = Number(values.port);
const count = Number(values.connections);
const size = Number(values.bytes);
const TIMEOUT_MS = 60_000;

/** One request on its own connection; resolves with the answer's x-peer and x-open headers. */
function exchangeOnce(body: Uint8Array): Promise<{ peer: string; open: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const socket = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => socket.destroy(new Error("no answer in time")), TIMEOUT_MS);
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on("data", (c: Uint8Array) => chunks.push(c));
    socket.on("end", () => {
      clearTimeout(timer);
      socket.end();
      try {
        resolve(parseAnswer(Buffer.concat(chunks), body));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(
      `POST /echo HTTP/1.1\r\nHost: service\r\nContent-Length: ${body.byteLength}\r\n` +
        "Connection: close\r\n\r\n",
    );
    socket.write(body);
  });
}

function parseAnswer(raw: Buffer, sent: Uint8Array): { peer: string; open: number } {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no HTTP answer (${raw.byteLength} bytes)`);
  const head = raw.subarray(0, end).toString("latin1").split("\r\n");
  if (!/^HTTP\/1\.1 200 /.test(head[0])) throw new Error(`answer: ${head[0]}`);
  const header = (name: string) =>
    head.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim() ?? "";
  const body = new Uint8Array(raw.subarray(end + 4));
  if (!equalBytes(body, sent)) {
    throw new Error(`echoed body differs (${body.byteLength} of ${sent.byteLength} bytes)`);
  }
  return { peer: header("x-peer"), open: Number(header("x-open")) };
}

const started = performance.now();
const results = await Promise.allSettled(
  Array.from({ length: count }, () => exchangeOnce(randomBytes(size))),
);
const ok = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
const errors = results.filter((r) => r.status === "rejected").map((r) => String(r.reason));
console.log(JSON.stringify({
  ok: ok.length,
  failed: errors.length,
  errors: [...new Set(errors)].slice(0, 5),
  peers: new Set(ok.map((r) => r.peer)).size,
  peerHosts: [...new Set(ok.map((r) => r.peer.replace(/:\d+$/, "")))],
  maxOpen: Math.max(0, ...ok.map((r) => r.open)),
  bytes: ok.length * size,
  ms: Math.round(performance.now() - started),
}));
