/**
 * `deno task bench:udp`: datagrams through a udp port mapping against direct
 * loopback, and `iperf3 -u` both ways, in one run (issue 20).
 *
 *   client → 127.0.0.1:mapped (agent A, udp) → hub → agent B → 127.0.0.1:echo
 *
 * The echo figure is a window of datagrams in flight, each echoed back:
 * datagrams/s and payload MB/s one way, and the datagrams that never came
 * back. `iperf3 -u -b 0` sends as fast as it can for 5 s (its control
 * connection over a tcp mapping on the same port number) and reports what the
 * server received and lost.
 */
import { api, Harness } from "../tests/fixtures/harness.ts";
import { MESH, startJoinedAgents } from "./mesh.ts";

const SECONDS = 5;

interface Figure {
  path: string;
  size: number;
  perSecond: number;
  mbPerSecond: number;
  lossPercent: number;
}

function echoTarget(): { port: number; close(): void } {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  (async () => {
    const buf = new Uint8Array(65_536);
    try {
      while (true) {
        const [d, from] = await sock.receive(buf);
        await sock.send(d, from).catch(() => {});
      }
    } catch { /* closed */ }
  })();
  return { port: (sock.addr as Deno.NetAddr).port, close: () => sock.close() };
}

/** Echo round trips with `window` datagrams in flight for `SECONDS`. */
async function echoRate(path: string, port: number, size: number, window = 32): Promise<Figure> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const payload = new Uint8Array(size);
  let sent = 0, back = 0, inflight = 0;
  let freed: (() => void) | undefined;
  const until = Date.now() + SECONDS * 1000;
  const reading = (async () => {
    const buf = new Uint8Array(65_536);
    try {
      while (true) {
        await sock.receive(buf);
        back++;
        inflight--;
        freed?.();
      }
    } catch { /* closed */ }
  })();
  const started = performance.now();
  while (Date.now() < until) {
    if (inflight >= window) {
      // A lost datagram would hold its slot for ever: wait at most 200 ms, then count it gone.
      const timedOut = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(true), 200);
        freed = () => {
          clearTimeout(t);
          r(false);
        };
      });
      freed = undefined;
      if (timedOut) inflight = Math.max(0, inflight - 1);
      continue;
    }
    await sock.send(payload, to);
    sent++;
    inflight++;
  }
  const seconds = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 1_000)); // stragglers
  sock.close();
  await reading;
  return {
    path,
    size,
    perSecond: back / seconds,
    mbPerSecond: back * size / seconds / 1e6,
    lossPercent: sent ? (sent - back) / sent * 100 : 0,
  };
}

async function iperf(path: string, port: number, size: number): Promise<Figure> {
  const out = await new Deno.Command("iperf3", {
    args: [
      "-u",
      "-c",
      "127.0.0.1",
      "-p",
      String(port),
      "-b",
      "0",
      "-l",
      String(size),
      "-t",
      String(SECONDS),
      "-J",
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout((SECONDS + 30) * 1000),
  }).output();
  const report = JSON.parse(new TextDecoder().decode(out.stdout) || "{}");
  const sum = report.end?.sum_received ?? report.end?.sum;
  if (!sum) {
    throw new Error(`iperf3 ${path}: ${new TextDecoder().decode(out.stderr)}${report.error ?? ""}`);
  }
  return {
    path,
    size,
    perSecond: (sum.packets - sum.lost_packets) / sum.seconds,
    mbPerSecond: sum.bits_per_second / 8 / 1e6,
    lossPercent: sum.lost_percent,
  };
}

async function main(): Promise<void> {
  await using h = new Harness();
  const { agentA: a, agentB: b } = await startJoinedAgents(h);
  const echo = echoTarget();
  const iperfPort = freeUdpPort();
  const server = new Deno.Command("iperf3", {
    args: ["-s", "-B", "127.0.0.1", "-p", String(iperfPort)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const service = async (proto: string, name: string, port: number) => {
      const res = await api(
        b.url,
        "POST",
        `/api/meshes/${MESH}/endpoints/b/services/${proto}/${name}`,
        {
          host: "127.0.0.1",
          port,
        },
      );
      if (res.status !== 201) {
        throw new Error(`service ${proto}/${name}: ${JSON.stringify(res.body)}`);
      }
    };
    await service("udp", "echo", echo.port);
    await service("udp", "iperf", iperfPort);
    await service("tcp", "iperf", iperfPort);
    await until(async () =>
      (await api(a.url, "GET", `/api/meshes/${MESH}/services`)).body?.items?.length === 3
    );
    const map = async (proto: string, name: string, port: number) => {
      const res = await api(
        a.url,
        "POST",
        `/api/meshes/${MESH}/endpoints/a/ports/127.0.0.1/${proto}/${port}`,
        {
          target: { service: name },
        },
      );
      if (res.status !== 201) {
        throw new Error(`mapping ${proto}/${name}: ${JSON.stringify(res.body)}`);
      }
    };
    const echoMapped = freeUdpPort();
    await map("udp", "echo", echoMapped);
    const iperfMapped = freeUdpPort();
    await map("udp", "iperf", iperfMapped);
    await map("tcp", "iperf", iperfMapped);
    const figures: Figure[] = [];
    for (const size of [64, 1200]) {
      await echoRate("warm-up", echoMapped, size, 4);
      figures.push(await echoRate("direct echo", echo.port, size));
      figures.push(await echoRate("ztm echo", echoMapped, size));
      figures.push(await iperf("iperf3 -u direct", iperfPort, size));
      figures.push(await iperf("iperf3 -u ztm", iperfMapped, size));
    }
    console.log("| path | datagram | datagrams/s | MB/s | loss |");
    console.log("|---|---:|---:|---:|---:|");
    for (const f of figures) {
      console.log(
        `| ${f.path} | ${f.size} B | ${Math.round(f.perSecond)} | ${f.mbPerSecond.toFixed(1)} | ${
          f.lossPercent.toFixed(2)
        } % |`,
      );
    }
  } finally {
    echo.close();
    server.kill();
    await server.status;
  }
}

function freeUdpPort(): number {
  // A port free for both UDP and TCP (the iperf mapping takes both).
  for (let i = 0; i < 20; i++) {
    const u = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (u.addr as Deno.NetAddr).port;
    u.close();
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch { /* taken for TCP: another */ }
  }
  throw new Error("no free port");
}

async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

if (import.meta.main) await main();
