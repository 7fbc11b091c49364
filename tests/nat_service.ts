/**
 * The office's service in the NAT lab: a plain HTTP/1.1 server on the office
 * subnet (not on the agent's host). `POST /echo` answers with the request
 * body, byte for byte; every answer names the peer it came from (`x-peer`,
 * which shows the tunnel's last hop is the office agent) and the number of
 * connections open at that moment (`x-open`). `GET /` answers `ok`.
 *
 * With `--tcp-echo=HOST:PORT` it also runs a plain TCP echo server there,
 * for connections that stay open and idle, and logs each such connection's
 * opening and closing.
 *
 * Usage: `deno run -A tests/nat_service.ts --listen=10.2.0.3:8080
 * --tcp-echo=10.2.0.3:7000`; logs one JSON `listening` line on stderr per
 * listener, like the components do.
 */
import http from "node:http";
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { listen: { type: "string" }, "tcp-echo": { type: "string" } },
});

function hostPort(text: string): [string, number] {
  const cut = text.lastIndexOf(":");
  return [text.slice(0, cut), Number(text.slice(cut + 1))];
}

function logListening(server: net.Server, kind: string): void {
  const a = server.address() as net.AddressInfo;
  console.error(JSON.stringify({ msg: "listening", kind, addr: `${a.address}:${a.port}` }));
}

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
const [host, port] = hostPort(values.listen ?? "127.0.0.1:0");
server.listen(port, host, () => logListening(server, "http"));

if (values["tcp-echo"]) {
  const echo = net.createServer((socket) => {
    console.error(JSON.stringify({ msg: "echo connection opened" }));
    socket.on("error", () => {}); // a peer that vanishes is normal here
    socket.on("close", () => console.error(JSON.stringify({ msg: "echo connection closed" })));
    socket.pipe(socket);
  });
  const [echoHost, echoPort] = hostPort(values["tcp-echo"]);
  echo.listen(echoPort, echoHost, () => logListening(echo, "tcp-echo"));
}
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
