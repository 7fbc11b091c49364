/**
 * Leaving a mesh while its hub link is still connecting must not take the
 * agent down. The fuzzer found it: a join followed at once by a leave
 * destroyed the HTTP/2 session while the link awaited the hub's CRL, and the
 * control request it then made on the dead session threw out of an event
 * handler and killed the process.
 */
import assert from "node:assert/strict";
import { api, Harness, issueUser } from "../fixtures/harness.ts";
import { meshStatus, waitConnected } from "../fixtures/mesh_fixture.ts";

Deno.test("an agent survives meshes left while their hub links connect, and still joins after", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const agent = await h.startAgent({ name: "agent-alice" });
  const body = (name: string) => ({
    ca: alice.ca,
    agent: { name, certificate: alice.certificate, privateKey: alice.privateKey },
    bootstraps: [hub.address],
  });
  // Leaves at growing delays after the join, so some land inside the CRL check.
  for (let i = 0; i < 40; i++) {
    const join = await api(agent.url, "POST", "/api/meshes/churn", body(`churn-${i}`));
    assert.equal(join.status, 201, JSON.stringify(join.body));
    await new Promise((r) => setTimeout(r, i % 10));
    const leave = await api(agent.url, "DELETE", "/api/meshes/churn");
    assert.equal(leave.status, 200, JSON.stringify(leave.body));
    assert.equal(agent.exited, false, `the agent died after round ${i}:\n${agent.tail(10)}`);
  }
  // Positive control: the same agent still joins and connects.
  const last = await api(agent.url, "POST", "/api/meshes/test", body("alice-ep"));
  assert.equal(last.status, 201, JSON.stringify(last.body));
  await waitConnected({ url: agent.url });
  assert.equal((await meshStatus({ url: agent.url })).status.connected, true);
  assert.equal(agent.exited, false, agent.tail(10));
});
