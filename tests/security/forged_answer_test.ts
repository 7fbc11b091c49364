/**
 * A hub cannot forge the answer to a management request. The caller, alice's
 * agent (a real process), is joined to a mesh whose hub is a hand-built rogue
 * (`rogue_hub.ts`) with a valid hub certificate; it sends her signed request
 * for bob's endpoint nowhere and answers it itself — unsigned, signed by
 * another member, by bob over another request or for another endpoint, by a
 * "bob" of another CA, or bob's real signature with the status or body
 * changed. alice's API must report each as an error in plain words, never as
 * the success it claims; an answer bob really signed over her request is
 * shown as it is, and the hub's own unsigned refusals stay errors.
 */
import assert from "node:assert/strict";
import { signAnswer, type SignedAnswer, type SignedRequest } from "@ztm/shared/signed_request";
import { api, Harness } from "../fixtures/harness.ts";
import { RogueHub } from "../fixtures/rogue_hub.ts";
import { newCa, newLeaf } from "../fixtures/test_pki.ts";

const BOB_ID = "0b0b0b0b-0000-4000-8000-000000000b0b";

type Answer = { status: number; body: string };

Deno.test("an agent reports a forged or unsigned management answer as an error, never as success", async () => {
  await using h = new Harness();
  await using rogue = await RogueHub.start();
  const alice = await h.startAgent({ name: "agent-alice" });
  const joined = await api(alice.url, "POST", "/api/meshes/rogue", {
    ca: rogue.ca.pem,
    agent: { name: "alice-ep", ...await rogue.user("alice") },
    bootstraps: [rogue.address],
  });
  assert.equal(joined.status, 201, JSON.stringify(joined.body));
  await rogue.nextControl();

  const bob = { ...await rogue.user("bob"), endpointId: BOB_ID };
  const mallory = { ...await rogue.user("mallory"), endpointId: BOB_ID };
  const foreignBob = { ...await newLeaf(await newCa(), { name: "bob" }), endpointId: BOB_ID };

  // What the rogue does with the next request for bob's endpoint.
  let answer: (request: SignedRequest) => Promise<Answer>;
  const requests: SignedRequest[] = [];
  rogue.onRequest = (stream, headers, body) => {
    const path = String(headers[":path"]);
    if (path === "/api/endpoints/bob") {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(JSON.stringify({
        id: BOB_ID,
        name: "bob",
        user: "bob",
        online: true,
        version: "t",
        address: "127.0.0.1",
        services: [],
        since: new Date().toISOString(),
      }));
      return;
    }
    if (path !== `/api/endpoints/${BOB_ID}/manage`) {
      stream.respond({ ":status": 404 });
      stream.end();
      return;
    }
    const request = JSON.parse(body) as SignedRequest;
    requests.push(request);
    answer(request).then(({ status, body }) => {
      stream.respond({ ":status": status, "content-type": "application/json" });
      stream.end(body);
    });
  };

  const svc = { host: "127.0.0.1", port: 7401, users: [], strict: false };
  const created = JSON.stringify({ proto: "tcp", name: "web", ...svc });
  const create = () =>
    api(alice.url, "POST", "/api/meshes/rogue/endpoints/bob/services/tcp/web", svc);
  const signed = async (
    request: SignedRequest,
    a: Answer,
    signer: { certificate: string; privateKey: string; endpointId: string },
    edit: (s: SignedAnswer) => SignedAnswer = (s) => s,
    status = a.status,
  ): Promise<Answer> => ({
    status,
    body: JSON.stringify(edit(await signAnswer(request, a, signer))),
  });

  const forgeries: [string, (r: SignedRequest) => Promise<Answer>, string, RegExp][] = [
    [
      "an unsigned 201 (what every hub could do before answers were signed)",
      () => Promise.resolve({ status: 201, body: created }),
      "unsigned_answer",
      /not signed/,
    ],
    [
      "signed by another member",
      (r) => signed(r, { status: 201, body: created }, mallory),
      "forged_answer",
      /signed by user "mallory", not by "bob"/,
    ],
    [
      "bob's signed answer to an earlier request",
      () => signed(requests[0], { status: 201, body: created }, bob),
      "forged_answer",
      /does not verify/,
    ],
    [
      "signed by bob for another endpoint",
      (r) => signed(r, { status: 201, body: created }, { ...bob, endpointId: "elsewhere" }),
      "forged_answer",
      /another endpoint/,
    ],
    [
      "signed by a bob of another CA",
      (r) => signed(r, { status: 201, body: created }, foreignBob),
      "forged_answer",
      /another CA/,
    ],
    [
      "bob's refusal with the hub's status changed to 201",
      (r) => signed(r, { status: 403, body: '{"error":{}}' }, bob, (s) => s, 201),
      "forged_answer",
      /status 201, signed 403/,
    ],
    [
      "bob's refusal turned into a 201 inside the signed answer too",
      (r) =>
        signed(
          r,
          { status: 403, body: '{"error":{}}' },
          bob,
          (s) => ({ ...s, status: 201, body: created }),
          201,
        ),
      "forged_answer",
      /does not verify/,
    ],
    [
      "bob's 201 with the body altered",
      (r) =>
        signed(
          r,
          { status: 201, body: created },
          bob,
          (s) => ({ ...s, body: created.replace("7401", "22") }),
        ),
      "forged_answer",
      /does not verify/,
    ],
  ];
  for (const [what, forge, code, message] of forgeries) {
    answer = forge;
    const res = await create();
    assert.equal(res.status, 502, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, code, `${what}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.error.message, message, what);
    assert.match(res.body.error.message, /endpoint "bob".*cannot be trusted/, what);
    console.log(`${what}: ${res.status} ${res.body.error.message}`);
  }

  // The hub's own refusal is unsigned, and stays the error it is.
  answer = () =>
    Promise.resolve({
      status: 503,
      body: JSON.stringify({
        error: { code: "endpoint_offline", message: "Endpoint bob is offline" },
      }),
    });
  const offline = await create();
  assert.equal(offline.status, 503, JSON.stringify(offline.body));
  assert.equal(offline.body.error.code, "endpoint_offline");

  // An answer bob really signed over this request is shown as it is: the checks above are the refusal.
  answer = (r) => signed(r, { status: 201, body: created }, bob);
  const real = await create();
  assert.equal(real.status, 201, JSON.stringify(real.body));
  assert.deepEqual(real.body, JSON.parse(created));

  assert.equal(
    alice.logs.filter((l) => l.msg === "remote answer refused").length,
    forgeries.length,
  );
});
