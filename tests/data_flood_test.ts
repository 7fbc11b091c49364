/**
 * A stranger flood on the data port (issue "Hostile members, strangers and
 * rogue hubs", item 10): from 127.0.0.2 … 127.0.0.5, connections that never
 * start TLS, opened until the hub refuses that address, against a hub run
 * under `ulimit -n 1024`. Then a new member still joins, and a tunnel whose
 * data rides the data port still works; the hub wrote a few log lines, not
 * one per connection.
 *
 * The hub cannot release a data-port socket whose TLS handshake never
 * started (Deno 2.9.3), so it must keep counting them: before, the
 * per-address count dropped at the hub's "close", the flood took every
 * descriptor and members could no longer join.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { componentRunArgs, eventually, Harness, issueUser, startProc } from "./harness.ts";
import { HubClient, userTls } from "./hub_client.ts";
import { addPortMapping, addService, startJoinedAgent } from "./mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "./net_helpers.ts";

const STRANGERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const FD_LIMIT = 1024;
const BATCH = 16;
/** Connections per address at which the flood gives up waiting for a refusal (all: > FD_LIMIT). */
const MAX_PER_STRANGER = 320;
/** How long a probe waits for the hub to close it before counting it as let in. */
const PROBE_MS = 2_000;

/**
 * True when the hub refuses a new data connection from `address`: it
 * finishes the TLS handshake and closes at once (a connection it lets in
 * waits for its ticket instead).
 */
function refusedFrom(port: number, address: string, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: "127.0.0.1", port, localAddress: address });
    raw.on("error", () => {});
    const s = tls.connect({ socket: raw, ca, servername: "localhost" });
    s.on("error", () => {});
    s.resume();
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, PROBE_MS);
    s.once("close", () => {
      clearTimeout(timer);
      resolve(s.authorized);
    });
  });
}

/** Opens idle connections from `address` in batches until the hub refuses it. */
async function flood(port: number, address: string, ca: string, sockets: net.Socket[]) {
  let opened = 0;
  while (opened < MAX_PER_STRANGER) {
    await Promise.all(Array.from({ length: BATCH }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port, localAddress: address });
        sockets.push(s);
        s.on("error", () => resolve());
        s.once("connect", () => resolve());
      })));
    opened += BATCH;
    if (await refusedFrom(port, address, ca)) return { opened, refused: true };
  }
  return { opened, refused: false };
}

Deno.test("a flood of idle data-port connections from a few addresses against a hub at 1,024 descriptors keeps members joining and tunnelling", () =>
  floodKeepsMembersIn(STRANGERS));

/**
 * The same from 16 addresses, past the data port's total cap: it passes only once idle sockets
 * can be freed by the hub, which today's TLS data port cannot do (Deno 2.9.3: an accepted TLS
 * connection whose handshake never started is not released on close). The plain-TCP data port
 * of "End-to-end encrypted tunnels" frees them; turn this on with it.
 */
Deno.test({
  name: "End-to-end encrypted tunnels: strangers on many addresses cannot fill the data port",
  ignore: true,
  fn: () => floodKeepsMembersIn(Array.from({ length: 16 }, (_, i) => `127.0.1.${i + 2}`)),
});

async function floodKeepsMembersIn(strangers: string[]): Promise<void> {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const ca = await h.startCa();
  const dir = await h.tempDir("ztm-hub-");
  const hubArgs = componentRunArgs("hub/main.ts", [
    `--ca=${ca.url.replace(/^http:\/\//, "")}`,
    "--listen=127.0.0.1:0",
    "--data-listen=127.0.0.1:0",
    "--names=localhost",
    `--data-dir=${dir}`,
    `--ca-token-file=${ca.database}.token`,
  ]);
  const quoted = [Deno.execPath(), ...hubArgs].map((a) => `'${a.replaceAll("'", "'\\''")}'`);
  const hub = startProc("hub", "sh", ["-c", `ulimit -n ${FD_LIMIT} && exec ${quoted.join(" ")}`]);
  const sockets: net.Socket[] = [];
  try {
    const line = await hub.waitForLog((l) => l.msg === "listening");
    const port = Number(String(line.addr).split(":").pop());
    const dataLine = await hub.waitForLog((l) => l.msg === "data port listening");
    const dataPort = Number(String(dataLine.addr).split(":").pop());
    const limits = await Deno.readTextFile(`/proc/${hub.child.pid}/limits`);
    assert.match(limits, new RegExp(`Max open files\\s+${FD_LIMIT}\\s`));
    const [aliceFiles, bobFiles] = await Promise.all(
      ["alice", "bob"].map((u) => issueUser(ca.url, u)),
    );
    const logsBefore = hub.logs.length;

    const floods = await Promise.all(
      strangers.map((a) => flood(dataPort, a, aliceFiles.ca, sockets)),
    );
    const opened = floods.reduce((n, f) => n + f.opened, 0);
    console.log(
      `stranger connections held per address when refused: ${
        floods.map((f) => f.opened).join(", ")
      }; ${hub.logs.length - logsBefore} hub log lines`,
    );

    // New members join while the strangers hold their connections.
    const join = async (files: typeof aliceFiles) => {
      try {
        return await startJoinedAgent(h, `localhost:${port}`, files);
      } catch (err) {
        throw new Error(`${files.user} did not join; hub said:\n${hub.tail(20)}`, { cause: err });
      }
    };
    const [alice, bob] = await Promise.all([join(aliceFiles), join(bobFiles)]);
    await using client = HubClient.connect(port, userTls(aliceFiles));
    const status = async () => JSON.parse((await client.request("GET", "/api/status")).text);
    const acceptedBefore = (await status()).dataConnections;

    // A tunnel whose legs go through the data port.
    await addService(bob, "echo", echo.port, ["alice"]);
    const mapped = await freePort();
    await addPortMapping(alice, mapped, "echo");
    await eventually(
      () => echoRoundTrip(mapped, 4096).then(() => true),
      30_000,
      "a tunnel through the mapping",
    );
    await echoRoundTrip(mapped, 64 * 1024);
    assert.ok(
      (await status()).dataConnections > acceptedBefore,
      "the agents' tunnel did not use the data port",
    );
    assert.equal(hub.exited, false);

    for (const [i, f] of floods.entries()) {
      assert.ok(f.refused, `${strangers[i]} was never refused after ${f.opened} connections`);
    }
    const written = hub.logs.length - logsBefore;
    assert.ok(written < 200, `${written} log lines for ${opened} stranger connections`);
  } finally {
    for (const s of sockets) s.destroy();
    await hub.stop();
  }
}
