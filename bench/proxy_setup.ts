/**
 * Connection setup through the proxy against a port mapping, in one run
 * (issue 21): the same mesh, the same echo target, the same agent; rounds
 * interleave the three ways so load and noise fall on each alike.
 *
 * One sample is a new TCP connection to agent A until the first byte comes
 * back from the target through the tunnel:
 * - mapping: connect to the mapped port, write `E`, read the echo;
 * - SOCKS5: connect to the proxy, write greeting and CONNECT `echo.mesh` in
 *   one write (as `curl` does), read the method and reply, write `E`, read;
 * - HTTP CONNECT: write `CONNECT echo.mesh:7 HTTP/1.1`, read the `200`
 *   head, write `E`, read.
 *
 *   deno task bench:proxy [--rounds=300]
 */
import { parseCommandLine } from "@ztm/shared/flags";
import { api, Harness } from "../tests/fixtures/harness.ts";
import { writeAll } from "./echo_server.ts";
import { MESH, startMesh } from "./mesh.ts";
import { freePort, LOOPBACK } from "./ports.ts";

const flags = parseCommandLine({
  name: "bench/proxy_setup.ts",
  summary: "Connection setup through the proxy against a port mapping.",
  args: [],
  flags: [{ name: "rounds", kind: "integer", default: "300", help: "samples per way" }],
  examples: ["deno task bench:proxy --rounds=300"],
}, Deno.args);
const rounds = flags.integer("rounds");
const enc = new TextEncoder();

async function readAtLeast(conn: Deno.Conn, n: number, until?: (b: Uint8Array) => boolean) {
  const buf = new Uint8Array(4096);
  let got = 0;
  while (got < n || (until && !until(buf.subarray(0, got)))) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) throw new Error(`closed after ${got} bytes`);
    got += r;
  }
  return buf.subarray(0, got);
}

async function sample(port: number, handshake?: (c: Deno.Conn) => Promise<void>): Promise<number> {
  const start = performance.now();
  const conn = await Deno.connect({ hostname: LOOPBACK, port });
  try {
    conn.setNoDelay(true);
    if (handshake) await handshake(conn);
    await writeAll(conn, enc.encode("E"));
    await readAtLeast(conn, 1);
    return performance.now() - start;
  } finally {
    conn.close();
  }
}

const name = enc.encode("echo.mesh");
const socks = new Uint8Array([5, 1, 0, 5, 1, 0, 3, name.byteLength, ...name, 0, 7]);
const socksHandshake = async (c: Deno.Conn) => {
  await writeAll(c, socks);
  const got = await readAtLeast(c, 12);
  if (got[1] !== 0 || got[3] !== 0) throw new Error(`SOCKS5 refused: ${[...got]}`);
};
const connectHandshake = async (c: Deno.Conn) => {
  await writeAll(c, enc.encode("CONNECT echo.mesh:7 HTTP/1.1\r\nHost: echo.mesh:7\r\n\r\n"));
  const head = await readAtLeast(c, 4, (b) => new TextDecoder().decode(b).includes("\r\n\r\n"));
  if (!new TextDecoder().decode(head).startsWith("HTTP/1.1 200")) {
    throw new Error("CONNECT refused");
  }
};

function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), mean, perSecond: 1000 / mean };
}

await using h = new Harness();
const echo = await h.spawnService("echo", "bench/echo_server.ts", ["--listen=127.0.0.1:0"]);
const mesh = await startMesh(h, { echo: echo.port });
const mapped = mesh.ports.get(echo.port)!;
const proxyPort = freePort();
const on = await api(mesh.agentA.url, "PUT", `/api/meshes/${MESH}/proxy`, {
  listen: `${LOOPBACK}:${proxyPort}`,
});
if (on.status !== 200) throw new Error(`proxy on: ${on.status} ${JSON.stringify(on.body)}`);

const ways: [string, () => Promise<number>][] = [
  ["port mapping", () => sample(mapped)],
  ["proxy, SOCKS5", () => sample(proxyPort, socksHandshake)],
  ["proxy, HTTP CONNECT", () => sample(proxyPort, connectHandshake)],
];
for (let i = 0; i < 30; i++) for (const [, run] of ways) await run(); // warm pools and caches
const samples = new Map(ways.map(([label]) => [label, [] as number[]]));
for (let i = 0; i < rounds; i++) {
  for (const [label, run] of ways) samples.get(label)!.push(await run());
}
const rows = ways.map(([label]) => ({ label, ...stats(samples.get(label)!) }));
const base = rows[0].p50;
console.log(
  `connection setup to the first echoed byte, ${rounds} sequential samples per way, interleaved:`,
);
console.log("way                   p50 ms  p90 ms  p99 ms  mean ms  conns/s  p50 vs mapping");
for (const r of rows) {
  console.log(
    `${r.label.padEnd(20)} ${r.p50.toFixed(2).padStart(7)} ${r.p90.toFixed(2).padStart(7)} ${
      r.p99.toFixed(2).padStart(7)
    } ${r.mean.toFixed(2).padStart(8)} ${r.perSecond.toFixed(0).padStart(8)}  ${
      (r.p50 / base).toFixed(2)
    }x`,
  );
}
