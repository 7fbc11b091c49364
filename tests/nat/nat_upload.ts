/**
 * An upload in the NAT lab: sends `--bytes` random bytes to a TCP sink at
 * `--host`:`--port` (see `nat_service.ts --tcp-sink`), half-closes, and
 * waits for the sink's byte count. Prints one JSON line:
 * `{sent, received, ms}` — `received` is what the sink counted, `ms` runs
 * from the connect to the count's arrival.
 */
import net from "node:net";
import { parseArgs } from "node:util";
import { randomBytes } from "../fixtures/net_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { host: { type: "string" }, port: { type: "string" }, bytes: { type: "string" } },
});
const total = Number(values.bytes);
const chunk = randomBytes(256 * 1024);

const started = performance.now();
const socket = net.connect({ host: values.host, port: Number(values.port), allowHalfOpen: true });
socket.setTimeout(60_000, () => socket.destroy(new Error("stalled for 60 s")));
let answer = "";
socket.on("data", (c: Uint8Array) => (answer += new TextDecoder().decode(c)));
socket.on("error", (err) => {
  console.log(JSON.stringify({ sent: total, received: 0, error: err.message }));
  Deno.exit(1);
});
socket.on("end", () => {
  const ms = Math.round(performance.now() - started);
  console.log(JSON.stringify({ sent: total, received: Number(answer.trim()), ms }));
  socket.end();
});
socket.once("connect", async () => {
  let sent = 0;
  while (sent < total) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
    sent += piece.length;
    if (!socket.write(piece)) await new Promise((r) => socket.once("drain", r));
  }
  socket.end();
});
