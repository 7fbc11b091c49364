/**
 * CA rotation as SECURITY.md ("How to rotate the CA") describes it for the
 * code as it is: a new CA and hub beside the old ones, devices moved one at a
 * time with invites, with no moment when every device must switch. The
 * provider joins the new mesh and offers the service in both; the client keeps
 * using the old mesh until it moves its mapping; then the provider leaves the
 * old mesh, the old hub and CA stop, and the service still answers.
 */
import assert from "node:assert/strict";
import { api, type ApiBody, eventually, Harness } from "../fixtures/harness.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";
import { issueUser, joinMesh } from "../fixtures/harness.ts";
import { inviteFor } from "../fixtures/ca_helpers.ts";

async function connected(url: string, mesh: string): Promise<ApiBody> {
  return await eventually(
    async () => {
      const m = (await api(url, "GET", `/api/meshes/${mesh}`)).body;
      return m?.status?.connected ? m : undefined;
    },
    20_000,
    `${url} connected to ${mesh}`,
  );
}

async function offer(url: string, mesh: string, ep: string, port: number): Promise<void> {
  const res = await api(url, "POST", `/api/meshes/${mesh}/endpoints/${ep}/services/tcp/echo`, {
    host: "127.0.0.1",
    port,
    users: ["alice"],
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

async function map(url: string, mesh: string, ep: string, port: number): Promise<void> {
  const res = await api(
    url,
    "POST",
    `/api/meshes/${mesh}/endpoints/${ep}/ports/127.0.0.1/tcp/${port}`,
    {
      target: { service: "echo" },
    },
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

Deno.test("a mesh moves to a new CA one device at a time: the service answers throughout", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  // The old mesh: CA, hub, bob providing echo, alice mapping a port to it.
  const oldCa = await h.startCa();
  const oldHub = await h.startHub(oldCa);
  const bob = await h.startAgent({ name: "agent-bob" });
  const alice = await h.startAgent({ name: "agent-alice" });
  const bobOld = await joinMesh(
    bob.url,
    "work",
    await issueUser(oldCa.url, "bob"),
    oldHub.address,
    "bob-ep",
  );
  const aliceOld = await joinMesh(
    alice.url,
    "work",
    await issueUser(oldCa.url, "alice"),
    oldHub.address,
    "alice-ep",
  );
  await connected(bob.url, "work");
  await connected(alice.url, "work");
  await offer(bob.url, "work", bobOld.endpoint.id, echo.port);
  const port = await freePort();
  await map(alice.url, "work", aliceOld.endpoint.id, port);
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "echo in the old mesh");

  // 1. The new CA and its hub, beside the old ones.
  const newCa = await h.startCa();
  const newHub = await h.startHub(newCa);
  await newHub.waitForLog((l) => l.msg === "hub announced to the ca");

  // 2. The provider first: bob joins the new mesh with an invite and offers echo there too.
  const bobJoined = await api(bob.url, "POST", "/api/meshes/work2?wait=20", {
    invite: await inviteFor(newCa.url, "bob"),
    agent: { name: "bob-ep" },
  });
  assert.equal(bobJoined.status, 201, JSON.stringify(bobJoined.body));
  await offer(bob.url, "work2", bobJoined.body.endpoint.id, echo.port);
  // The client has not moved and need not: the old mesh still carries it.
  for (let i = 0; i < 5; i++) await echoRoundTrip(port);

  // 3. The client moves when it suits it: joins, and moves its mapping.
  const aliceJoined = await api(alice.url, "POST", "/api/meshes/work2?wait=20", {
    invite: await inviteFor(newCa.url, "alice"),
    agent: { name: "alice-ep" },
  });
  assert.equal(aliceJoined.status, 201, JSON.stringify(aliceJoined.body));
  const gone = await api(
    alice.url,
    "DELETE",
    `/api/meshes/work/endpoints/${aliceOld.endpoint.id}/ports/127.0.0.1/tcp/${port}`,
  );
  assert.equal(gone.status, 200, JSON.stringify(gone.body));
  await map(alice.url, "work2", aliceJoined.body.endpoint.id, port);
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "echo in the new mesh");

  // 4. Everyone has moved: leave the old mesh, stop its hub and CA; the service still answers.
  for (const url of [alice.url, bob.url]) {
    assert.equal((await api(url, "DELETE", "/api/meshes/work")).status, 200);
  }
  await oldHub.stop();
  await oldCa.stop();
  for (let i = 0; i < 5; i++) await echoRoundTrip(port);
  const meshes: ApiBody[] = (await api(alice.url, "GET", "/api/meshes")).body;
  assert.deepEqual(meshes.map((m) => m.name), ["work2"]);
  assert.equal(meshes[0].caCertificate.warning, null);
});
