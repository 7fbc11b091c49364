/**
 * Services in the NAT lab, each on the address given by its flag (all
 * optional):
 *
 * - `--http=HOST:PORT`: a plain HTTP/1.1 server. `POST /echo` answers with
 *   the request body, byte for byte; every answer names the peer it came
 *   from (`x-peer`, which shows the tunnel's last hop is the office agent)
 *   and the number of connections open at that moment (`x-open`). `GET /`
 *   answers `ok`.
 * - `--tcp-echo=HOST:PORT`: a TCP echo server, for connections that stay open
 *   and idle; it logs each connection's opening and closing.
 * - `--tcp-sink=HOST:PORT`: counts the bytes of each connection and, when
 *   the peer half-closes, answers with the count as one line and closes.
 *
 * Usage: `deno run -A tests/nat/nat_service.ts --http=10.2.0.3:8080
 * --tcp-echo=10.2.0.3:7000`; logs one JSON `listening` line (with `kind`) on
 * stderr per listener, like the components do.
 */
import http from "node:http";
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    http: { type: "string" },
    "tcp-echo": { type: "string" },
    "tcp-sink": { type: "string" },
  },
});

const log = (fields: Record<string, unknown>) => console.error(JSON.stringify(fields));

function listen(server: net.Server, kind: string, address: string): void {
  const cut = address.lastIndexOf(":");
  server.listen(Number(address.slice(cut + 1)), address.slice(0, cut), () => {
    const a = server.address() as net.AddressInfo;
    log({ msg: "listening", kind, addr: `${a.address}:${a.port}` });
  });
}

if (values.http) {
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
  listen(server, "http", values.http);
}

if (values["tcp-echo"]) {
  const echo = net.createServer((socket) => {
    log({ msg: "echo connection opened" });
    socket.on("error", () => {}); // a peer that vanishes is normal here
    socket.on("close", () => log({ msg: "echo connection closed" }));
    socket.pipe(socket);
  });
  listen(echo, "tcp-echo", values["tcp-echo"]);
}

if (values["tcp-sink"]) {
  const sink = net.createServer({ allowHalfOpen: true }, (socket) => {
    let count = 0;
    socket.on("error", () => {});
    socket.on("data", (c: Uint8Array) => (count += c.byteLength));
    socket.on("end", () => socket.end(`${count}\n`));
  });
  listen(sink, "tcp-sink", values["tcp-sink"]);
}

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
