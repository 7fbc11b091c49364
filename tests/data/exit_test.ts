/**
 * Exits (issue "Reach services by name"): bob's endpoint offers an exit to
 * the office network, a list of destinations; alice's proxy sends names
 * outside the mesh through it (`PUT …/proxy {exit}`), with real curl over
 * SOCKS5. An allowed destination answers; a destination outside the list,
 * the exit's own loopback, and a DNS name resolving outside the list are
 * refused before any packet leaves the exit (counted at listeners there),
 * and a user no rule admits is refused too. The exit comes back after a
 * restart of bob's agent.
 */
import assert from "node:assert/strict";
import { curl } from "../../agent/proxy/_fixture.ts";
import { agentFlags, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import { MESH, type MeshAgent, restartJoinedAgent, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";

/** An HTTP server on `hostname` that counts the connections it accepts. */
function countingHttp(hostname: string, port: number) {
  const server = { accepted: 0, close: () => {} };
  const listener = Deno.listen({ hostname, port });
  server.close = () => listener.close();
  (async () => {
    for await (const conn of listener) {
      server.accepted++;
      (async () => {
        try {
          const buf = new Uint8Array(4096);
          await conn.read(buf);
          const body = `office ${hostname}\n`;
          await conn.write(
            new TextEncoder().encode(
              `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
            ),
          );
        } catch {
          /* client gone */
        } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  })().catch(() => {});
  return server;
}

async function socksGet(proxyPort: number, url: string) {
  return await curl(["--socks5-hostname", `127.0.0.1:${proxyPort}`, url]);
}

async function proxyPort(agent: MeshAgent): Promise<number> {
  const st = await api(agent.url, "GET", `/api/meshes/${MESH}/proxy`);
  return Number(String(st.body.address).split(":").pop());
}

Deno.test("an exit carries names outside the mesh to the destinations its list allows, and nothing else", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob", "carol"]);
  const { alice, bob, carol } = m.agents;
  const port = await freePort();
  // The office network: an allowed host (127.0.0.2), a host outside the list (127.0.0.3),
  // and the exit's own loopback (127.0.0.1), each counting what reaches it.
  const office = countingHttp("127.0.0.2", port);
  const outside = countingHttp("127.0.0.3", port);
  const own = countingHttp("127.0.0.1", port);
  try {
    // Without rules there is no exit, and bad rules are refused naming the problem.
    const bad = await api(bob.url, "PUT", `/api/meshes/${MESH}/exit`, {
      rules: [{ destinations: ["10.0.0.0/33"] }],
    });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    const set = await api(bob.url, "PUT", `/api/meshes/${MESH}/exit`, {
      rules: [{ destinations: ["127.0.0.2/32"], ports: [String(port)], users: ["alice"] }],
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const on = await api(alice.url, "PUT", `/api/meshes/${MESH}/proxy`, {
      listen: "127.0.0.1:0",
      exit: "bob-ep",
    });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    // carol's proxy goes on from the command line.
    await ztmOk([
      "proxy",
      "on",
      "--listen=127.0.0.1:0",
      "--exit=bob-ep",
      ...agentFlags(carol.proc),
    ]);
    const alicePort = await proxyPort(alice);

    // Allowed: the office host answers through bob's exit.
    const ok = await eventually(
      async () => {
        const r = await socksGet(alicePort, `http://127.0.0.2:${port}/`);
        return r.code === 0 ? r : undefined;
      },
      20_000,
      "the allowed destination through the exit",
    );
    assert.equal(ok.out, "office 127.0.0.2\n");
    assert.equal(office.accepted, 1);

    // Refused before any packet leaves the exit: outside the list, the exit's own loopback,
    // and a name that resolves outside the list (localhost → 127.0.0.1).
    for (const url of [`http://127.0.0.3:${port}/`, `http://127.0.0.1:${port}/`]) {
      const r = await socksGet(alicePort, url);
      assert.notEqual(r.code, 0, `${url} went through: ${r.out}`);
    }
    const byName = await socksGet(alicePort, `http://localhost:${port}/`);
    assert.notEqual(byName.code, 0, `localhost went through: ${byName.out}`);
    // A user no rule admits gets nothing either.
    const carolTry = await socksGet(await proxyPort(carol), `http://127.0.0.2:${port}/`);
    assert.notEqual(carolTry.code, 0, `carol went through: ${carolTry.out}`);
    assert.equal(outside.accepted, 0, "a packet reached a host outside the list");
    assert.equal(own.accepted, 0, "a packet reached the exit's own loopback");
    assert.equal(office.accepted, 1, "carol reached the office");
    const refused = bob.proc.logs.filter((l) =>
      l.msg === "tunnel refused" && l.service === "tcp/exit"
    );
    assert.ok(refused.length >= 3, JSON.stringify(refused));

    // The exit is stored: it comes back with bob's agent.
    await restartJoinedAgent(h, bob);
    const bob2 = bob;
    assert.deepEqual(
      (await api(bob2.url, "GET", `/api/meshes/${MESH}/exit`)).body.rules[0].destinations,
      ["127.0.0.2/32"],
    );
    await eventually(
      async () => {
        const r = await socksGet(alicePort, `http://127.0.0.2:${port}/`);
        return r.code === 0 && r.out === "office 127.0.0.2\n";
      },
      30_000,
      "the exit back after bob's restart",
    );

    // Off: names outside the mesh are refused again, and nothing is offered.
    const off = await api(bob2.url, "DELETE", `/api/meshes/${MESH}/exit`);
    assert.equal(off.status, 200);
    const before = office.accepted;
    await eventually(
      async () => {
        const r = await socksGet(alicePort, `http://127.0.0.2:${port}/`);
        return r.code !== 0;
      },
      20_000,
      "the exit gone",
    );
    assert.equal(office.accepted, before);
  } finally {
    office.close();
    outside.close();
    own.close();
  }
});
