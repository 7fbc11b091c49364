/**
 * `kill -9` of an agent in the middle of 100 writes through its API (service
 * and port-mapping creations, a few always in flight): the SQLite file the
 * killed process left opens, `PRAGMA integrity_check` passes, every change
 * answered 201 is there, and a new agent on the same file serves them all.
 * The moment of the kill is random; its seed is printed (FAULT_SEED=… to repeat).
 */
import assert from "node:assert/strict";
import { api, Harness } from "../fixtures/harness.ts";
import { withDatabase } from "../fixtures/ca_helpers.ts";
import { endpointPath, MESH, startMeshOf } from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";
import { seededRandom } from "../fixtures/fault_helpers.ts";

Deno.test("kill -9 during 100 agent API writes leaves a sound database holding every change answered 201", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const random = seededRandom("agent kill");
  const total = 100;
  const killAfter = 5 + Math.floor(random() * 85);
  console.log(`kill -9 after ${killAfter} of ${total} acknowledged writes`);

  const services: string[] = [];
  const ports: number[] = [];
  let next = 0;
  let killed: Promise<Deno.CommandStatus> | undefined;
  // Even writes publish a service, odd ones map a local port to the service before them.
  const write = async (i: number): Promise<void> => {
    const name = `svc-${String(i >> 1).padStart(2, "0")}`;
    if (i % 2 === 0) {
      const res = await api(
        alice.url,
        "POST",
        endpointPath(alice.endpointId, `services/tcp/${name}`),
        {
          host: "127.0.0.1",
          port: 10_000 + i,
          users: ["*"],
        },
      );
      assert.equal(res.status, 201, `${name}: ${JSON.stringify(res.body)}`);
      services.push(name);
      return;
    }
    const port = await freePort();
    const res = await api(
      alice.url,
      "POST",
      endpointPath(alice.endpointId, `ports/127.0.0.1/tcp/${port}`),
      {
        target: { service: name },
      },
    );
    // Another test may have taken the port in between: that write is simply not acknowledged.
    if (res.status === 409 && res.body?.error?.code === "port_in_use") return;
    assert.equal(res.status, 201, `port ${port}: ${JSON.stringify(res.body)}`);
    ports.push(port);
  };
  const worker = async () => {
    while (next < total) {
      const i = next++;
      try {
        await write(i);
      } catch (err) {
        if (!killed) throw err;
        return; // the agent is gone; this write may or may not have committed
      }
      if (services.length + ports.length >= killAfter && !killed) killed = alice.proc.kill();
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  assert.equal((await killed!).signal, "SIGKILL");

  // The files as the killed process left them.
  const stored = withDatabase(alice.proc.database, (db) => {
    const check = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    assert.deepEqual(check.map((r) => r.integrity_check), ["ok"]);
    return {
      services: (db.prepare("SELECT name FROM services WHERE mesh = ?").all(MESH) as {
        name: string;
      }[]).map((r) => r.name),
      ports: (db.prepare("SELECT port FROM ports WHERE mesh = ?").all(MESH) as {
        port: number;
      }[]).map((r) => r.port),
    };
  });
  for (const s of services) assert.ok(stored.services.includes(s), `${s} answered 201, not stored`);
  for (const p of ports) assert.ok(stored.ports.includes(p), `port ${p} answered 201, not stored`);
  assert.ok(stored.services.length + stored.ports.length <= next);

  // A new agent on the same file lists exactly what is stored.
  const again = await h.startAgent({ dir: alice.proc.dir, name: "agent-alice-again" });
  const listed = await api(again.url, "GET", endpointPath(alice.endpointId, "services"));
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  assert.deepEqual(
    listed.body.map((s: { name: string }) => s.name).sort(),
    [...stored.services].sort(),
  );
  const mapped = await api(again.url, "GET", endpointPath(alice.endpointId, "ports"));
  assert.equal(mapped.status, 200, JSON.stringify(mapped.body));
  assert.deepEqual(
    mapped.body.map((p: { port: number }) => p.port).sort(),
    [...stored.ports].sort(),
  );
});
