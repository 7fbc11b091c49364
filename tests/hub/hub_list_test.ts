/**
 * The mesh's hub list, with real processes: hubs tell agents every hub of the
 * mesh (from the CA's live hub certificates), so an agent joined with one hub
 * holds them all, a hub added later is joined with no re-join, a restart keeps
 * what was learnt, and a revoked hub certificate is left while the others
 * carry on. A rogue hub's list gets nothing dialled but hubs the mesh CA
 * vouches for, on names their certificates carry, and every refusal is logged.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCertificate, serialOf } from "@ztm/shared/certs";
import { api, type ApiBody, eventually, Harness, issueUser } from "../fixtures/harness.ts";
import {
  endpointPath,
  hubStates,
  joinedOn,
  mapEcho,
  MESH,
  type MeshAgent,
  restartJoinedAgent,
} from "../fixtures/mesh_fixture.ts";
import { echoRoundTrip, startEchoServer } from "../fixtures/net_helpers.ts";
import { RogueHub } from "../fixtures/rogue_hub.ts";
import { newCa, newLeaf } from "../fixtures/test_pki.ts";

/** Hubs ask the CA for the list every second here (10 s by default). */
const FAST_LIST = ["--hub-list-every=1"];

async function waitHubs(agent: MeshAgent, up: string[], what: string, absent: string[] = []) {
  await eventually(
    async () => {
      const s = await hubStates(agent);
      return up.every((a) => s[a]?.connected === true) && absent.every((a) => !(a in s));
    },
    30_000,
    what,
  );
}

async function hubSerial(dir: string): Promise<string> {
  return serialOf(parseCertificate(await Deno.readTextFile(join(dir, "hub.crt"))));
}

Deno.test("agents learn every hub from the hub list: a fourth hub needs no re-join, a revoked one is left", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const ca = await h.startCa();
  const hubA = await h.startHub(ca, { args: FAST_LIST });
  const hubB = await h.startHub(ca, { args: FAST_LIST });
  const hubC = await h.startHub(ca, { args: FAST_LIST });
  const [aliceFiles, bobFiles] = await Promise.all(
    ["alice", "bob"].map((u) => issueUser(ca.url, u)),
  );
  // Each joins with one hub only.
  const alice = await joinedOn(h, [hubA.address], aliceFiles);
  const bob = await joinedOn(h, [hubB.address], bobFiles);
  const three = [hubA.address, hubB.address, hubC.address];
  await waitHubs(alice, three, "alice learns hubs B and C");
  await waitHubs(bob, three, "bob learns hubs A and C");
  const learnt = (await hubStates(alice))[hubB.address];
  assert.equal(learnt.origin, "listed");
  assert.equal((await hubStates(alice))[hubA.address].origin, "bootstrap");

  const port = await mapEcho(alice, bob, echo.port);

  // A fourth hub started later: both agents hold it, nobody re-joins.
  const hubD = await h.startHub(ca, { args: FAST_LIST });
  const all = [...three, hubD.address];
  await waitHubs(alice, all, "alice joins hub D by herself");
  await waitHubs(bob, all, "bob joins hub D by himself");
  await alice.proc.waitForLog((l) => l.msg === "hub learnt from the hub list", 1_000);

  // A restart keeps what was learnt (hub D is dialled at once, not after a list arrives).
  await restartJoinedAgent(h, alice);
  await waitHubs(alice, all, "alice back on all four hubs after a restart");
  assert.equal((await hubStates(alice))[hubD.address].origin, "listed");

  // Hub D's certificate revoked at the CA: the agents leave it and keep working.
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const del = await fetch(`${ca.url}/api/hub-certificates/${await hubSerial(hubD.dir)}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(del.status, 200, await del.text());
  await waitHubs(alice, three, "alice leaves hub D", [hubD.address]);
  await waitHubs(bob, three, "bob leaves hub D", [hubD.address]);
  // And the CA lists it no more, so no hub tells anyone of it again.
  const listed = await (await fetch(`${ca.url}/api/hubs`)).json();
  assert.ok(!listed.some((x: ApiBody) => x.control.includes(hubD.address)), JSON.stringify(listed));
  for (let i = 0; i < 5; i++) await echoRoundTrip(port);

  // A restart does not bring it back.
  await restartJoinedAgent(h, bob);
  await waitHubs(bob, three, "bob back", [hubD.address]);
});

Deno.test("a rogue hub's list gets only the mesh CA's hubs dialled, on their own names; the rest is logged", async () => {
  await using h = new Harness();
  await using rogue = await RogueHub.start();
  // Listeners standing in for the addresses the rogue names: any connection to them is a dial.
  const dialled = new Map<number, number>();
  const listeners = await Promise.all([0, 1, 2, 3].map(() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    dialled.set(port, 0);
    (async () => {
      for await (const c of l) {
        dialled.set(port, dialled.get(port)! + 1);
        c.close();
      }
    })().catch(() => {});
    return { l, port };
  }));
  try {
    const [userAuth, foreign, unnamed, vouched] = listeners.map((x) => x.port);
    const files = await rogue.user("alice");
    const otherCa = await newCa();
    const realHub = () =>
      newLeaf(rogue.ca, { name: "hub2", role: "server", altNames: ["127.0.0.1"] });
    const entries = [
      // A member's certificate (it carries serverAuth for end-to-end tunnels), not a hub's.
      { addresses: [`127.0.0.1:${userAuth}`], certificate: files.certificate },
      // A hub certificate of another CA.
      {
        addresses: [`127.0.0.1:${foreign}`],
        certificate: (await newLeaf(otherCa, {
          name: "hub",
          role: "server",
          altNames: ["127.0.0.1"],
        })).certificate,
      },
      // A real hub certificate, but for an address it does not name.
      {
        addresses: [`localhost:${unnamed}`],
        certificate: (await newLeaf(rogue.ca, {
          name: "hub3",
          role: "server",
          altNames: ["hub3.example.net"],
        })).certificate,
      },
      // The only one the mesh CA vouches for on this address.
      { addresses: [`127.0.0.1:${vouched}`], certificate: (await realHub()).certificate },
    ];
    const agent = await h.startAgent({ name: "agent-rogue" });
    const res = await api(agent.url, "POST", `/api/meshes/${MESH}`, {
      ca: rogue.ca.pem,
      agent: { name: "alice-ep", ...files },
      bootstraps: [rogue.address],
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const control = await rogue.nextControl();
    control.write(JSON.stringify({ type: "hubs", hubs: entries }));
    // The same list again, and a flood of lists: checked one at a time, logged once each.
    for (let i = 0; i < 50; i++) control.write(JSON.stringify({ type: "hubs", hubs: entries }));
    // Malformed lists are refused whole.
    control.write(JSON.stringify({ type: "hubs", hubs: "all of them" }));
    control.write(
      JSON.stringify({ type: "hubs", hubs: Array(65).fill(entries[3]) }),
    );

    await eventually(() => dialled.get(vouched)! > 0, 15_000, "the vouched hub is dialled");
    const refusals = () =>
      agent.logs.filter((l) => l.msg === "hub list entry refused: not a hub of this mesh");
    await eventually(() => refusals().length === 3, 15_000, "three entries refused");
    const why = refusals().map((l) => String(l.err)).sort();
    assert.match(why.join("\n"), /not a hub certificate/);
    assert.match(why.join("\n"), /not signed by this mesh's CA/);
    assert.match(why.join("\n"), /names none of its addresses/);
    assert.ok(
      agent.logs.some((l) => l.msg === "bad message from hub"),
      "malformed lists are refused",
    );
    // Give a wrong dial time to happen, then check none did.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(dialled.get(userAuth), 0);
    assert.equal(dialled.get(foreign), 0);
    assert.equal(dialled.get(unnamed), 0);
    assert.equal(refusals().length, 3, "a repeated list is not logged again");
    // The agent is still on the rogue's hub (its mesh) and lists the vouched hub, down.
    const s = await api(agent.url, "GET", `/api/meshes/${MESH}`);
    const hubs: ApiBody[] = s.body.status.hubs;
    assert.deepEqual(hubs.map((x) => x.origin).sort(), ["bootstrap", "listed"]);
    assert.ok(hubs.some((x) => x.address === `127.0.0.1:${vouched}` && !x.connected));
  } finally {
    for (const { l } of listeners) l.close();
  }
});

Deno.test("management reaches an endpoint that only another hub sees", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  // Each hub announces a name no agent here can resolve, so the hub list adds no session:
  // bob stays on hub A only, carol on hub B only; root holds both.
  const hubA = await h.startHub(ca, { args: ["--names=hub-a.example.net,localhost"] });
  const hubB = await h.startHub(ca, { args: ["--names=hub-b.example.net,localhost"] });
  const [rootFiles, bobFiles, carolFiles] = await Promise.all(
    ["root", "bob", "carol"].map((u) => issueUser(ca.url, u)),
  );
  const root = await joinedOn(h, [hubA.address, hubB.address], rootFiles);
  const bob = await joinedOn(h, [hubA.address], bobFiles);
  const carol = await joinedOn(h, [hubB.address], carolFiles);
  await waitHubs(root, [hubA.address, hubB.address], "root on both hubs");
  // Whichever hub root prefers, one of the two targets is not on it.
  for (const target of [bob, carol]) {
    const res = await api(root.url, "GET", endpointPath(target.endpointId, "services"));
    assert.equal(res.status, 200, `${target.endpointName}: ${JSON.stringify(res.body)}`);
  }
  const s = await hubStates(bob);
  assert.equal(s[hubA.address].connected, true);
  assert.ok(!Object.values(s).some((x) => x.address !== hubA.address && x.connected));
});

Deno.test("every hub session adopts its hub's renewed certificate, not only the preferred one", async () => {
  await using h = new Harness();
  // Hub certificates of 60 s (they start a minute back): each hub renews 20 s after issue.
  const ca = await h.startCa({ args: ["--hub-cert-lifetime=60s"] });
  const hubA = await h.startHub(ca);
  const hubB = await h.startHub(ca);
  const both = [hubA.address, hubB.address];
  const alice = await joinedOn(h, both, await issueUser(ca.url, "alice"));
  await waitHubs(alice, both, "alice on both hubs");
  const since = Object.fromEntries(
    Object.entries(await hubStates(alice)).map(([a, s]) => [a, s.since]),
  );
  const adopted = (address: string) =>
    alice.proc.logs.some((l) => l.msg === "hub certificate renewal adopted" && l.peer === address);
  await eventually(() => both.every(adopted), 90_000, "both hub sessions adopt a renewal");
  // Past the first certificates' notAfter: no session was dropped.
  await eventually(
    () => hubA.logs.filter((l) => l.msg === "hub certificate renewed").length >= 2,
    60_000,
    "hub A renewed twice",
  );
  assert.ok(!alice.proc.logs.some((l) => l.msg === "hub certificate expired; disconnecting"));
  const now = await hubStates(alice);
  for (const a of both) {
    assert.equal(now[a].connected, true, a);
    assert.equal(now[a].since, since[a], `${a}: the session was not dropped`);
  }
});
