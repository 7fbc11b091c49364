/**
 * First throughput figure: 1 GiB through one port mapping (client → agent A →
 * hub → agent B → sink), against the same bytes sent straight to the sink in
 * the same run. Prints a table and one JSON line.
 *
 *   npx -y deno@2.9.3 run -A bench/throughput.ts [--mib=1024]
 */
import net from "node:net";
import { parseArgs } from "node:util";
import { api, Harness, issueUser, joinMesh } from "../tests/harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string", default: "1024" } },
});
const TOTAL = Number(values.mib) * 1024 * 1024;
const CHUNK = new Uint8Array(256 * 1024);

/** A sink that counts bytes and reports when the sender half-closes. */
function sink(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((s) => {
    s.on("data", () => {});
    s.on("end", () => s.end("done"));
    s.on("error", () => {});
  });
  return new Promise((r) =>
    server.listen(
      0,
      "127.0.0.1",
      () => r({ port: (server.address() as net.AddressInfo).port, close: () => server.close() }),
    )
  );
}

/** Sends TOTAL bytes to `port`, waits for the sink's "done"; returns MB/s (10^6 bytes). */
function send(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      let sent = 0;
      const pump = () => {
        while (sent < TOTAL) {
          sent += CHUNK.byteLength;
          if (!socket.write(CHUNK)) return socket.once("drain", pump);
        }
        socket.end();
      };
      pump();
    });
    socket.on("data", () => {});
    socket.on("end", () => resolve(TOTAL / 1e6 / ((performance.now() - started) / 1000)));
    socket.on("error", reject);
  });
}

await using h = new Harness();
const ca = await h.startCa();
const hub = await h.startHub(ca);
const a = await h.startAgent({ name: "agent-a" });
const b = await h.startAgent({ name: "agent-b" });
await joinMesh(a.url, "bench", await issueUser(ca.url, "root"), hub.address, "a");
await joinMesh(b.url, "bench", await issueUser(ca.url, "bob"), hub.address, "b");
const target = await sink();
const svc = await api(b.url, "POST", "/api/meshes/bench/endpoints/b/services/tcp/sink", {
  host: "127.0.0.1",
  port: target.port,
});
if (svc.status !== 201) throw new Error(JSON.stringify(svc.body));
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (l.addr as Deno.NetAddr).port;
l.close();
while ((await api(a.url, "GET", "/api/meshes/bench/services")).body?.items?.length !== 1) {
  await new Promise((r) => setTimeout(r, 100));
}
const map = await api(a.url, "POST", `/api/meshes/bench/endpoints/a/ports/127.0.0.1/tcp/${port}`, {
  target: { service: "sink" },
});
if (map.status !== 201) throw new Error(JSON.stringify(map.body));
const direct = await send(target.port);
const mesh = await send(port);
target.close();
console.log(`| path | MB/s (${values.mib} MiB, one connection) |\n|---|---|`);
console.log(
  `| direct loopback | ${direct.toFixed(0)} |\n| ztm port mapping | ${mesh.toFixed(0)} |`,
);
console.log(
  JSON.stringify({
    mib: Number(values.mib),
    directMBps: Math.round(direct),
    meshMBps: Math.round(mesh),
    ratio: +(mesh / direct).toFixed(3),
  }),
);
