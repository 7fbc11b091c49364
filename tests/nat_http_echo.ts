/**
 * The office's service in the NAT lab: a plain HTTP/1.1 server on the office
 * subnet (not on the agent's host). `POST /echo` answers with the request
 * body, byte for byte; every answer names the peer it came from (`x-peer`,
 * which shows the tunnel's last hop is the office agent) and the number of
 * connections open at that moment (`x-open`). `GET /` answers `ok`.
 *
 * Usage: `deno run -A tests/nat_http_echo.ts --listen=10.2.0.3:8080`; logs one
 * JSON `listening` line on stderr, like the components do.
 */
import http from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({ args: Deno.args, options: { listen: { type: "string" } } });
const listen = values.listen ?? "127.0.0.1:0";
const cut = listen.lastIndexOf(":");
const host = listen.slice(0, cut);
const port = Number(listen.slice(cut + 1));

let open = 0;
const server = http.createServer((req, res) => {
  const chunks: Uint8Array[] = [];
  req.on("data", (c: Uint8Array) => chunks.push(c));
  req.on("end", () => {
    const body = req.method === "POST" && req.url === "/echo"
      ? Buffer.concat(chunks)
      : Buffer.from("ok\n");
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(body.byteLength),
      "x-peer": `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      "x-open": String(open),
    });
    res.end(body);
  });
});
server.on("connection", (socket) => {
  open++;
  socket.on("close", () => open--);
});
server.listen(port, host, () => {
  const a = server.address() as { address: string; port: number };
  console.error(JSON.stringify({ msg: "listening", addr: `${a.address}:${a.port}` }));
});
Deno.addSignalListener("SIGTERM", () => server.close(() => Deno.exit(0)));
