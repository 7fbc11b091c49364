/**
 * A mesh CA given as a bundle (a second CA certificate beside the mesh's, as
 * while a CA is rotated; SECURITY.md): the agents join with it, reach the hub,
 * verify its CRLs, carry end-to-end tunnels between each other, and verify
 * signed management requests and answers, all against whichever certificate
 * of the bundle signed. The other CA comes first, so nothing that reads only
 * the first certificate of the PEM passes; a bundle without the mesh's CA is
 * still refused.
 */
import assert from "node:assert/strict";
import { api, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import { addPortMapping, addService, MESH, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, freePort, startEchoServer } from "../fixtures/net_helpers.ts";
import { newCa } from "../fixtures/test_pki.ts";

Deno.test("agents given the mesh CA in a bundle with another CA join, tunnel, manage and verify CRLs", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const other = await newCa();
  const withBundle = async (user: string) => {
    const files = await issueUser(ca.url, user);
    return { ...files, ca: other.pem + files.ca };
  };
  const root = await startJoinedAgent(h, hub.address, await withBundle("root"));
  const bob = await startJoinedAgent(h, hub.address, await withBundle("bob"));

  // An end-to-end tunnel: each side checks the other's certificate against the bundle.
  await addService(bob, "echo", echo.port, ["root"]);
  const port = await freePort();
  await addPortMapping(root, port, "echo");
  await eventually(() => echoRoundTrip(port).then(() => true), 15_000, "echo through the tunnel");

  // Remote management: root's signed request is verified by bob, bob's signed answer by root.
  const remote = await api(
    root.url,
    "POST",
    `/api/meshes/${MESH}/endpoints/${bob.endpointId}/services/tcp/web`,
    { host: "127.0.0.1", port: echo.port, users: ["root"] },
  );
  assert.equal(remote.status, 201, JSON.stringify(remote.body));
  const listed = await api(
    root.url,
    "GET",
    `/api/meshes/${MESH}/endpoints/${bob.endpointId}/services`,
  );
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  const services: { name: string }[] = listed.body.items ?? listed.body;
  assert.ok(services.some((s) => s.name === "web"), JSON.stringify(listed.body));

  // A CRL (a revocation) verified against the bundle and adopted, no alarm.
  const from = root.proc.logs.length;
  await issueUser(ca.url, "carol");
  const revoked = await fetch(`${ca.url}/api/certificates/carol`, { method: "DELETE" });
  assert.equal(revoked.status, 200);
  await revoked.body?.cancel();
  await root.proc.waitForLog((l) => l.msg === "crl adopted" && Number(l.count) >= 1, 20_000, from);
  assert.equal(root.proc.logs.filter((l) => l.msg === "crl refused").length, 0);
  // The hubs' list of hubs was checked against the bundle too, and its hub kept.
  for (const agent of [root, bob]) {
    assert.deepEqual(
      agent.proc.logs.filter((l) => l.msg === "hub list entry refused: not a hub of this mesh"),
      [],
    );
  }
  const status = (await api(root.url, "GET", `/api/meshes/${MESH}`)).body.status;
  assert.equal(status.connected, true);
  assert.equal(status.crlAlarm, undefined);
  for (let i = 0; i < 3; i++) await echoRoundTrip(port);

  // A bundle without the mesh's CA is no way in.
  const stranger = await h.startAgent({ name: "agent-stranger" });
  const files = await issueUser(ca.url, "dave");
  const refused = await api(stranger.url, "POST", `/api/meshes/${MESH}`, {
    ca: other.pem + (await newCa()).pem,
    agent: { name: "dave-ep", certificate: files.certificate, privateKey: files.privateKey },
    bootstraps: [hub.address],
  });
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, "certificate_not_from_ca");
});
