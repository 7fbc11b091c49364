/**
 * Remote management, both ends in one process with real certificates of a
 * test CA (the hub's part is a direct call): a signed request runs as its
 * signer and comes back with an answer the caller verifies; altered,
 * unsigned, replayed or misdirected traffic is refused; refusals of requests
 * that did not verify are noted apart, logged once per kind, and rationed
 * per caller user by a token bucket.
 *
 * `EndpointOps` (what a verified request runs) is a stand-in that records
 * its calls: its own behaviour is tested through the agent API.
 */
import assert from "node:assert/strict";
import type { ZtmError } from "@ztm/shared/errors";
import { NonceCache, type SignedRequest, signRequest } from "@ztm/shared/signed_request";
import { newCa, newLeaf } from "../tests/fixtures/test_pki.ts";
import type { EndpointOps } from "./endpoint_ops.ts";
import { memoryLog } from "./proxy/_fixture.ts";
import { RefusalBudget, RemoteManagement, UNVERIFIED_BURST } from "./remote.ts";
import type { ManageHandler, MeshConfig, MeshRuntime } from "./runtime.ts";

type Run = { mesh: string; caller: unknown; method: string; path: string; body: string };

/** Alice's and bob's endpoints of one mesh: bob answers, alice sends through `hub`. */
async function meshOfTwo(opts: { budget?: RefusalBudget } = {}) {
  const ca = await newCa();
  const config = async (user: string): Promise<MeshConfig> => {
    const leaf = await newLeaf(ca, { name: user, role: "client" });
    return {
      name: "m",
      ca: ca.pem,
      certificate: leaf.certificate,
      privateKey: leaf.privateKey,
      bootstraps: [],
      endpointId: `${user}-ep`,
      endpointSeed: "",
      endpointName: `${user}-laptop`,
    };
  };
  const alice = await config("alice");
  const bob = await config("bob");
  const runs: Run[] = [];
  const noted: Record<string, unknown>[] = [];
  const ops = {
    run: (mesh: string, caller: unknown, method: string, path: string, body: string) => {
      runs.push({ mesh, caller, method, path, body });
      return Promise.resolve(Response.json({ done: path }, { status: 201 }));
    },
    noteUnverified: (_mesh: string, entry: Record<string, unknown>) => void noted.push(entry),
  } as unknown as EndpointOps;
  const bobSide = memoryLog();
  const bobRemote = new RemoteManagement({
    ops,
    log: bobSide.log,
    nonces: new NonceCache(),
    budget: opts.budget,
  });
  const revoked = new Set<string>();
  const bobRuntime = { revoked: () => revoked } as unknown as MeshRuntime;
  const answer: ManageHandler = bobRemote.handler(() => bob, () => bobRuntime);
  /**
   * What the hub does with a request on its way (default: carries it as JSON, naming a caller
   * other than the signer: only the signature decides who acts).
   */
  let hub = (req: SignedRequest) =>
    answer(JSON.parse(JSON.stringify(req)), { endpoint: "hub-claims-ep", user: "hub-claims" });
  const aliceRuntime = {
    manage: (_target: string, req: SignedRequest) => hub(req),
    revoked: () => new Set<string>(),
  } as unknown as MeshRuntime;
  const aliceSide = memoryLog();
  const aliceRemote = new RemoteManagement({ ops, log: aliceSide.log, nonces: new NonceCache() });
  return {
    alice,
    bob,
    runs,
    noted,
    answer,
    bobLines: bobSide.lines,
    aliceLines: aliceSide.lines,
    setHub: (h: typeof hub) => void (hub = h),
    send: (method: string, path: string, body = "") =>
      aliceRemote.send(
        alice,
        aliceRuntime,
        { id: "bob-ep", name: "bob-laptop", user: "bob" },
        method,
        path,
        body,
      ),
  };
}

Deno.test("a refusal budget spends a burst, refills with time, refunds, and forgets the longest quiet", () => {
  const b = new RefusalBudget(3, 1_000);
  for (let i = 0; i < 3; i++) {
    assert.equal(b.wait("u", 0), 0);
    b.charge("u", 0);
  }
  assert.equal(b.wait("u", 0), 1_000);
  assert.equal(b.wait("u", 400), 600);
  assert.equal(b.wait("other", 400), 0, "each caller has its own bucket");
  b.refund("u");
  assert.equal(b.wait("u", 400), 0);
  for (let i = 0; i < 10; i++) b.refund("u");
  for (let i = 0; i < 3; i++) b.charge("u", 400);
  assert.ok(b.wait("u", 400) > 0, "refunds do not grow the bucket past its burst");
  assert.equal(b.wait("u", 10_000), 0, "a full refill");

  const small = new RefusalBudget(1, 1e9);
  small.charge("first", 0);
  small.charge("second", 0);
  small.charge("first", 0); // charged again: now the most recent
  assert.ok(small.wait("first", 0) > 0);
  for (let i = 0; i < 999; i++) small.charge(`c${i}`, 0);
  assert.equal(small.wait("second", 0), 0, "the 1001st caller pushed out the longest quiet");
  assert.ok(small.wait("first", 0) > 0, "a caller charged lately is still tracked");
});

Deno.test("a signed request runs as its signer and its answer is verified by the caller", async () => {
  const m = await meshOfTwo();
  const res = await m.send("PUT", "/services/tcp/web", '{"port":80}');
  assert.equal(res.status, 201);
  assert.deepEqual(await res.json(), { done: "/services/tcp/web" });
  assert.deepEqual(m.runs, [{
    mesh: "m",
    caller: { user: "alice", via: "alice-ep", remote: true },
    method: "PUT",
    path: "/services/tcp/web",
    body: '{"port":80}',
  }]);
  assert.deepEqual(m.noted, []);
  assert.ok(m.aliceLines.some((l) => l.msg === "remote request sent" && l.status === 201));
});

Deno.test("an answer the target did not sign over this request is refused 502; an unsigned error passes", async () => {
  const m = await meshOfTwo();
  const real = m.answer;
  // The hub alters the signed answer's body.
  m.setHub(async (req) => {
    const a = await real(JSON.parse(JSON.stringify(req)), { endpoint: "alice-ep", user: "alice" });
    const signed = JSON.parse(a.body);
    return { status: a.status, body: JSON.stringify({ ...signed, body: '{"done":"nothing"}' }) };
  });
  await assert.rejects(m.send("GET", "/status"), (e: ZtmError) => {
    assert.equal(e.status, 502);
    assert.equal(e.code, "forged_answer");
    assert.match(e.message, /endpoint "bob-laptop"/);
    return true;
  });
  assert.ok(m.aliceLines.some((l) => l.msg === "remote answer refused" && l.endpoint === "bob-ep"));
  // The hub answers success itself.
  m.setHub(() => Promise.resolve({ status: 200, body: "{}" }));
  await assert.rejects(m.send("GET", "/status"), { code: "unsigned_answer" });
  // The hub's own refusal is unsigned and passed on as it is.
  m.setHub(() => Promise.resolve({ status: 404, body: '{"error":{"code":"unknown_endpoint"}}' }));
  const refused = await m.send("GET", "/status");
  assert.equal(refused.status, 404);
  assert.match(await refused.text(), /unknown_endpoint/);
  // A malformed endpoint record from the hub is refused before anything is signed.
  await assert.rejects(
    new RemoteManagement({
      ops: {} as EndpointOps,
      log: memoryLog().log,
      nonces: new NonceCache(),
    }).send(m.alice, {} as MeshRuntime, { id: 7 } as never, "GET", "/", ""),
    { code: "bad_hub_response" },
  );
});

Deno.test("garbage, replays and requests for another endpoint never run, and are noted as unverified", async () => {
  const m = await meshOfTwo();
  const from = { endpoint: "mallory-ep", user: "mallory" };
  const garbage = await m.answer("\u001b[2Jhello", from);
  assert.equal(garbage.status, 400);
  assert.match(garbage.body, /bad_signed_request/);

  let captured: SignedRequest | undefined;
  m.setHub((req) => {
    captured = JSON.parse(JSON.stringify(req));
    return m.answer(JSON.parse(JSON.stringify(req)), { endpoint: "alice-ep", user: "alice" });
  });
  await m.send("DELETE", "/services/tcp/web");
  assert.equal(m.runs.length, 1);
  const replay = await m.answer(captured, { endpoint: "alice-ep", user: "alice" });
  assert.equal(replay.status, 401);
  assert.equal(
    JSON.parse(replay.body).format,
    "ztm-management-answer-v1",
    "a parsed request's answer is signed",
  );
  // Signed by alice for carol's endpoint, brought to bob's.
  const misdirected = await signRequest(
    { method: "GET", path: "/status", body: "", target: "carol-ep", from: "alice-ep" },
    m.alice,
  );
  const wrong = await m.answer(misdirected, { endpoint: "alice-ep", user: "alice" });
  assert.equal(wrong.status, 403);
  assert.match(wrong.body, /wrong_target/);
  assert.equal(m.runs.length, 1, "nothing more ran");
  assert.deepEqual(m.noted.map((n) => [n.user, n.status]), [
    ["mallory (unverified)", 400],
    ["alice (unverified)", 401],
    ["alice (unverified)", 403],
  ]);
  assert.equal(m.noted[0].via, "mallory-ep");
  assert.equal(m.noted[1].path, "/services/tcp/web");
  // One line per kind of refusal (a second of a kind is counted, not logged).
  await m.answer("again", { endpoint: "mallory-ep", user: "mallory" });
  const logged = m.bobLines.filter((l) => l.msg === "remote request refused");
  assert.deepEqual(logged.map((l) => l.code), [
    "bad_signed_request",
    "replayed_request",
    "wrong_target",
  ]);
  assert.equal(m.noted.length, 4);
});

Deno.test("a caller past its ration of unverified requests is answered 429; verified ones cost nothing", async () => {
  const m = await meshOfTwo({ budget: new RefusalBudget(2, 1e9) });
  const mallory = { endpoint: "mallory-ep", user: "mallory" };
  for (let i = 0; i < 2; i++) assert.equal((await m.answer({}, mallory)).status, 400);
  const limited = await m.answer({}, { endpoint: "another-ep", user: "mallory" });
  assert.equal(limited.status, 429);
  assert.match(limited.body, /too_many_refusals/);
  assert.match(limited.body, /User \\"mallory\\" \(endpoint \\"another-ep\\"\)/);
  // Alice's verified requests are charged and refunded: any number of them pass.
  for (let i = 0; i < 3; i++) assert.equal((await m.send("GET", `/r${i}`)).status, 201);
  assert.equal(m.runs.length, 3);
  assert.ok(UNVERIFIED_BURST > 2, "the default burst is larger than this test's");
});
