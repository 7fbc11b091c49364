/**
 * A real mesh: one CA, one hub and three agents (alice, bob, root) as
 * separate processes. Joining, discovery, tunnels carrying HTTP and raw TCP
 * (crossed-stream and large-payload checks), deleting mappings and services,
 * and bad input against the agent's API.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import net from "node:net";
import {
  api,
  type ApiBody,
  eventually,
  Harness,
  issueUser,
  joinMesh,
  run,
} from "../fixtures/harness.ts";
import { freePort, randomBytes, startEchoServer } from "../fixtures/net_helpers.ts";

const MESH = "home";

/** Sends `payload` to 127.0.0.1:`port`, half-closes, and returns everything read back. */
function roundTrip(port: number, payload: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => {
      socket.end(payload);
    });
    socket.on("data", (c: Uint8Array) => chunks.push(c));
    socket.on("error", reject);
    socket.on("end", () => {
      socket.end();
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.byteLength;
      }
      resolve(out);
    });
  });
}

/** Opens a connection and resolves with how it ended: "closed" with no bytes, or the bytes read. */
function connectOutcome(port: number): Promise<{ connected: boolean; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let connected = false;
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      connected = true;
      socket.write("ping\n");
    });
    socket.on("data", (c: Uint8Array) => (bytes += c.byteLength));
    socket.on("error", () => {});
    socket.on("close", () => resolve({ connected, bytes }));
    setTimeout(() => socket.destroy(), 10_000);
  });
}

async function sha256(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("a mesh of three agents tunnels TCP through the hub", async (t) => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const users = ["alice", "bob", "root"] as const;
  const agents = Object.fromEntries(
    await Promise.all(users.map(async (u) => [u, await h.startAgent({ name: `agent-${u}` })])),
  );
  const ids: Record<string, string> = {};
  const echo = await startEchoServer();
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("hello from bob\n"),
  );

  try {
    await t.step(
      "every agent joins through its API and lists all three endpoints online",
      async () => {
        for (const u of users) {
          const files = await issueUser(ca.url, u);
          const joined = await joinMesh(agents[u].url, MESH, files, hub.address, `${u}-pc`);
          ids[u] = joined.endpoint.id;
          assertEquals(joined.user, u);
          assert(
            !JSON.stringify(joined).includes("PRIVATE KEY"),
            "join answer must not echo the key",
          );
        }
        for (const u of users) {
          await eventually(
            async () => {
              const res = await api(agents[u].url, "GET", `/api/meshes/${MESH}/endpoints`);
              const online = (res.body.items ?? []).filter((e: ApiBody) => e.online).map((
                e: ApiBody,
              ) => e.name).sort();
              return res.status === 200 && online.join() === "alice-pc,bob-pc,root-pc";
            },
            15_000,
            `${u} sees all three online`,
          );
        }
      },
    );

    await t.step("curl through alice's port mapping gets bob's HTTP server's answer", async () => {
      const res = await api(
        agents.bob.url,
        "POST",
        `/api/meshes/${MESH}/endpoints/bob-pc/services/tcp/web`,
        {
          host: "127.0.0.1",
          port: http.addr.port,
          users: ["alice"],
        },
      );
      assertEquals(res.status, 201, JSON.stringify(res.body));
      const port = await freePort();
      const map = await api(
        agents.alice.url,
        "POST",
        `/api/meshes/${MESH}/endpoints/alice-pc/ports/127.0.0.1/tcp/${port}`,
        {
          target: { service: "web" },
        },
      );
      assertEquals(map.status, 201, JSON.stringify(map.body));
      const out = await eventually(
        async () => {
          const r = await run("curl", ["-s", "--max-time", "5", `http://127.0.0.1:${port}/`], {
            allowFail: true,
          });
          return r.code === 0 && r.stdout;
        },
        10_000,
        "curl through the mapping",
      );
      assertEquals(out, "hello from bob\n");
    });

    let echoPort = 0;
    await t.step(
      "100 connections at once, each with its own 1 MiB, all echo back intact",
      async () => {
        const svc = await api(
          agents.bob.url,
          "POST",
          `/api/meshes/${MESH}/endpoints/bob-pc/services/tcp/echo`,
          {
            host: "127.0.0.1",
            port: echo.port,
            users: ["alice"],
          },
        );
        assertEquals(svc.status, 201);
        echoPort = await freePort();
        const map = await api(
          agents.alice.url,
          "POST",
          `/api/meshes/${MESH}/endpoints/alice-pc/ports/127.0.0.1/tcp/${echoPort}`,
          {
            target: { service: "echo" },
          },
        );
        assertEquals(map.status, 201);
        await eventually(
          async () => (await roundTrip(echoPort, new Uint8Array([1, 2, 3]))).length === 3,
          10_000,
        );
        const payloads = Array.from({ length: 100 }, () => randomBytes(1024 * 1024));
        const results = await Promise.all(payloads.map((p) => roundTrip(echoPort, p)));
        for (let i = 0; i < payloads.length; i++) {
          assertEquals(results[i].byteLength, payloads[i].byteLength, `connection ${i} length`);
          assertEquals(
            await sha256(results[i]),
            await sha256(payloads[i]),
            `connection ${i} content`,
          );
        }
      },
    );

    await t.step("a 64 MiB payload round-trips intact", async () => {
      const payload = randomBytes(64 * 1024 * 1024);
      const back = await roundTrip(echoPort, payload);
      assertEquals(back.byteLength, payload.byteLength);
      assertEquals(await sha256(back), await sha256(payload));
    });

    await t.step("deleting a mapping closes its listener", async () => {
      const del = await api(
        agents.alice.url,
        "DELETE",
        `/api/meshes/${MESH}/endpoints/alice-pc/ports/127.0.0.1/tcp/${echoPort}`,
      );
      assertEquals(del.status, 200, JSON.stringify(del.body));
      const outcome = await connectOutcome(echoPort);
      assertEquals(outcome.connected, false, "nothing listens on the deleted mapping's port");
      const list = await api(
        agents.alice.url,
        "GET",
        `/api/meshes/${MESH}/endpoints/alice-pc/ports`,
      );
      assert(!list.body.some((p: ApiBody) => p.port === echoPort));
    });

    await t.step(
      "deleting a service makes new connections through a mapping fail cleanly",
      async () => {
        const port = await freePort();
        const map = await api(
          agents.alice.url,
          "POST",
          `/api/meshes/${MESH}/endpoints/alice-pc/ports/127.0.0.1/tcp/${port}`,
          {
            target: { service: "echo" },
          },
        );
        assertEquals(map.status, 201);
        await eventually(
          async () => (await roundTrip(port, new Uint8Array([7]))).length === 1,
          10_000,
        );
        const before = echo.accepted;
        const del = await api(
          agents.bob.url,
          "DELETE",
          `/api/meshes/${MESH}/endpoints/bob-pc/services/tcp/echo`,
        );
        assertEquals(del.status, 200);
        const outcome = await eventually(
          async () => {
            const o = await connectOutcome(port);
            return o.bytes === 0 ? o : undefined;
          },
          10_000,
          "connections fail once the service is gone",
        );
        assertEquals(outcome.bytes, 0);
        assertEquals(echo.accepted, before, "the target saw no new connection");
      },
    );

    await t.step("bad input gets its status and a JSON error, and changes nothing", async () => {
      const url = agents.alice.url;
      const before = {
        meshes: (await api(url, "GET", "/api/meshes")).body.length,
        services: (await api(url, "GET", `/api/meshes/${MESH}/endpoints/alice-pc/services`)).body,
        ports: (await api(url, "GET", `/api/meshes/${MESH}/endpoints/alice-pc/ports`)).body,
      };
      const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const busyPort = (busy.addr as Deno.NetAddr).port;
      const base = `/api/meshes/${MESH}/endpoints/alice-pc`;
      const cases: [string, string, unknown, number][] = [
        ["POST", "/api/meshes/other", "{not json", 400],
        ["POST", "/api/meshes/bad%20name", { ca: "x" }, 400],
        ["POST", "/api/meshes/other", { ca: "garbage", agent: {}, bootstraps: [] }, 400],
        ["GET", "/api/meshes/nope/endpoints", undefined, 404],
        ["GET", `/api/meshes/${MESH}/endpoints/no-such-endpoint`, undefined, 404],
        ["POST", `${base}/services/tcp/bad%20name`, { host: "127.0.0.1", port: 80 }, 400],
        ["POST", `${base}/services/sctp/x`, { host: "127.0.0.1", port: 80 }, 400],
        ["POST", `${base}/services/tcp/x`, { host: "127.0.0.1", port: 70000 }, 400],
        ["POST", `${base}/services/tcp/x`, { host: "127.0.0.1" }, 400],
        ["POST", `${base}/services/tcp/x`, "[1,2]", 400],
        ["DELETE", `${base}/services/tcp/nope`, undefined, 404],
        ["POST", `${base}/ports/127.0.0.1/tcp/0`, { target: { service: "web" } }, 400],
        ["POST", `${base}/ports/127.0.0.1/tcp/99999`, { target: { service: "web" } }, 400],
        ["POST", `${base}/ports/not-an-ip/tcp/1234`, { target: { service: "web" } }, 400],
        ["POST", `${base}/ports/127.0.0.1/tcp/${busyPort}`, { target: { service: "web" } }, 409],
        ["POST", `${base}/ports/127.0.0.1/tcp/1234`, { target: {} }, 400],
        ["DELETE", `${base}/ports/127.0.0.1/tcp/1`, undefined, 404],
        [
          "POST",
          `${base}/services/tcp/big`,
          JSON.stringify({ host: "x".repeat(200_000), port: 1 }),
          413,
        ],
      ];
      try {
        for (const [method, path, body, status] of cases) {
          const res = await api(url, method, path, body);
          assertEquals(res.status, status, `${method} ${path}: ${JSON.stringify(res.body)}`);
          assert(
            typeof res.body?.error?.code === "string",
            `${method} ${path} answers a JSON error`,
          );
          assert(typeof res.body?.error?.message === "string");
        }
      } finally {
        busy.close();
      }
      assertEquals((await api(url, "GET", "/api/meshes")).body.length, before.meshes);
      assertEquals(
        (await api(url, "GET", `/api/meshes/${MESH}/endpoints/alice-pc/services`)).body,
        before.services,
      );
      assertEquals(
        (await api(url, "GET", `/api/meshes/${MESH}/endpoints/alice-pc/ports`)).body,
        before.ports,
      );
    });
  } finally {
    await echo.close();
    await http.shutdown();
  }
});
