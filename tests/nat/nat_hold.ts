/**
 * A client in the NAT lab that keeps one connection open, idle, through a
 * port mapping to a TCP echo service: it connects to 127.0.0.1:`--port`,
 * checks that one line comes back and prints `{"event":"open"}`, then only
 * waits; when the connection ends it prints `{"event":"closed"}` and exits.
 */
import net from "node:net";
import { parseArgs } from "node:util";

const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string" } } });
const say = (event: Record<string, unknown>) => console.log(JSON.stringify(event));

const socket = net.connect({ host: "127.0.0.1", port: Number(values.port) });
let echoed = "";
socket.on("data", (chunk: Uint8Array) => {
  echoed += new TextDecoder().decode(chunk);
  if (echoed === "hello\n") say({ event: "open" });
});
socket.on("error", (err) => say({ event: "error", err: err.message }));
socket.on("close", () => {
  say({ event: "closed" });
  Deno.exit(0);
});
socket.once("connect", () => socket.write("hello\n"));
