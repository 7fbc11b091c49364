/**
 * Endpoint identity is not first-come: an id is derived from the key of the
 * certificate that registers it and a seed its agent chose, names never take
 * the id form, and a hub restart changes nothing about who owns which id.
 * An agent database from before key-bound ids migrates on start.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { endpointIdOfCertificate } from "@ztm/shared/endpoint_id";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { errorCode, HubClient, userTls } from "../fixtures/hub_client.ts";
import {
  endpointSeenBy,
  MESH,
  restartJoinedAgent,
  startJoinedAgent,
  startMeshOf,
  waitConnected,
} from "../fixtures/mesh_fixture.ts";

Deno.test("a member cannot register another endpoint's name as its id, nor a name in the id form", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const bob = await issueUser(m.ca.url, "bob");
  await using bobClient = HubClient.connect(m.hub.port, userTls(bob));

  // Bob names his endpoint id after alice's endpoint name: refused, it is no id.
  const byName = await bobClient.openControl("bob-1", "bob-ep", { id: alice.endpointName });
  assert.equal(byName.status, 400, byName.text);
  assert.equal(errorCode(byName.text), "bad_endpoint_id");
  // Nor may a name look like an id (alice's id, in any case).
  await using bobClient2 = HubClient.connect(m.hub.port, userTls(bob));
  const idName = await bobClient2.openControl("bob-2", alice.endpointId.toUpperCase());
  assert.equal(idName.status, 400, idName.text);
  assert.equal(errorCode(idName.text), "bad_name");

  // A lookup by alice's name still finds alice's endpoint, and so does one by her id.
  for (const key of [alice.endpointName, alice.endpointId]) {
    const found = await bobClient.request("GET", `/api/endpoints/${key}`);
    assert.equal(found.status, 200, found.text);
    assert.equal(JSON.parse(found.text).id, alice.endpointId);
    assert.equal(JSON.parse(found.text).user, "alice");
  }
});

Deno.test("another member cannot claim an endpoint's id, before or after a hub restart, even with its seed", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  const seed = String(
    new DatabaseSync(alice.proc.database, { readOnly: true })
      .prepare("SELECT endpoint_seed FROM meshes").get()?.endpoint_seed,
  );
  assert.equal(endpointIdOfCertificate(alice.files.certificate, seed), alice.endpointId);
  const bob = await issueUser(m.ca.url, "bob");

  // Alice's agent is stopped and the hub restarted: the hub's registry is empty.
  await alice.proc.stop();
  await m.hub.stop();
  const hub = await h.startHub(m.ca, {
    dir: m.hub.dir,
    args: [`--listen=127.0.0.1:${m.hub.port}`],
  });
  await using bobClient = HubClient.connect(hub.port, userTls(bob));
  const claim = await bobClient.openControl(seed, "bob-claims", { id: alice.endpointId });
  assert.equal(claim.status, 403, claim.text);
  assert.equal(errorCode(claim.text), "endpoint_not_yours");

  // Alice's agent comes back and gets its id; bob's lookups by id reach hers.
  alice.proc = await h.startAgent({ dir: alice.proc.dir, name: "agent-alice-back" });
  alice.url = alice.proc.url;
  await waitConnected(alice);
  const record = await endpointSeenBy(alice, alice.endpointId);
  assert.equal(record?.online, true);
  assert.equal(record?.user, "alice");
  await using bobClient2 = HubClient.connect(hub.port, userTls(bob));
  const again = await bobClient2.openControl(seed, "bob-claims", { id: alice.endpointId });
  assert.equal(again.status, 403, again.text);
  assert.ok(["endpoint_taken", "endpoint_not_yours"].includes(errorCode(again.text)!), again.text);
});

Deno.test("two agents sharing one user certificate get different ids, each its own after restarts", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const second = await startJoinedAgent(h, m.hub.address, m.agents.alice.files, "alice-2");
  assert.notEqual(second.endpointId, m.agents.alice.endpointId);
  await restartJoinedAgent(h, second);
  assert.equal((await endpointSeenBy(m.agents.alice, second.endpointId))?.online, true);
  assert.equal((await endpointSeenBy(second, m.agents.alice.endpointId))?.online, true);
});

Deno.test("an agent database from before key-bound ids migrates its id on start, says so, and connects", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice"]);
  const alice = m.agents.alice;
  await alice.proc.stop();
  // Make it the database an older agent wrote: schema 4, a random UUID as the id, no seed.
  const old = crypto.randomUUID();
  const db = new DatabaseSync(alice.proc.database);
  db.exec(`ALTER TABLE meshes DROP COLUMN endpoint_seed;
           ALTER TABLE audit DROP COLUMN detail;
           DROP TABLE proxies;
           DROP TABLE exits;
           ALTER TABLE meshes DROP COLUMN listed_hubs;
           UPDATE meshes SET endpoint_id = '${old}';
           PRAGMA user_version = 4;`);
  db.close();

  alice.proc = await h.startAgent({ dir: alice.proc.dir, name: "agent-migrated" });
  alice.url = alice.proc.url;
  const line = await alice.proc.waitForLog((l) =>
    l.msg === "endpoint id migrated to a key-bound id"
  );
  const migrated = endpointIdOfCertificate(alice.files.certificate, old);
  assert.equal(line.from, old);
  assert.equal(line.endpoint, migrated);
  assert.equal(line.mesh, MESH);
  await waitConnected(alice);
  const status = await api(alice.url, "GET", `/api/meshes/${MESH}`);
  assert.equal(status.body.endpoint.id, migrated);
  assert.equal((await endpointSeenBy(alice, migrated))?.online, true);

  // Once only: the next start keeps the new id and logs no migration.
  await alice.proc.stop();
  alice.proc = await h.startAgent({ dir: alice.proc.dir, name: "agent-again" });
  alice.url = alice.proc.url;
  await waitConnected(alice);
  assert.equal((await api(alice.url, "GET", `/api/meshes/${MESH}`)).body.endpoint.id, migrated);
  assert.ok(!alice.proc.logs.some((l) => l.msg === "endpoint id migrated to a key-bound id"));
});
