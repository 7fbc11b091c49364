import assert from "node:assert/strict";
import {
  certificatePem,
  checkCsr,
  fingerprintOf,
  issueLeafCertificate,
  parseCertificate,
  publicKeyHex,
} from "@ztm/shared/certs";
import { ZtmError } from "@ztm/shared/errors";
import { encodeInvite, enrollmentProof, inviteProofKey } from "@ztm/shared/invite";
import { Logger } from "@ztm/shared/log";
import { enrollWithInvite } from "./enroll.ts";
import { freePort } from "../tests/fixtures/net_helpers.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";

const LOG = new Logger("agent", { sink: () => {} });
const SECRET = new Uint8Array(32).fill(7);
const ID = "0123456789abcdef";

/**
 * An enrollment port over TLS with a hub certificate of `ca`: `/ca` serves `served` (the
 * mesh CA unless given), `/enroll` checks the invite's proof and answers `answer` (by
 * default a member certificate of `ca` for the CSR's key and name).
 */
async function enrollmentPort(
  ca: TestCa,
  opts: {
    served?: string;
    answer?: (issue: (commonName?: string, by?: TestCa) => Promise<string>) => Promise<Response>;
  } = {},
) {
  const hub = await newLeaf(ca, { name: "hub", role: "server", altNames: ["127.0.0.1"] });
  const posts: Record<string, string>[] = [];
  const issue = async (
    csr: Awaited<ReturnType<typeof checkCsr>>,
    commonName?: string,
    by: TestCa = ca,
  ) =>
    certificatePem(
      await issueLeafCertificate(by, {
        commonName: commonName ?? csr.commonName,
        publicKey: csr.publicKey,
        role: "client",
      }),
    );
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: hub.certificate,
    key: hub.privateKey,
    onListen: () => {},
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/ca") return new Response(opts.served ?? ca.pem);
    const body = await req.json();
    posts.push(body);
    const csr = await checkCsr(body.csr);
    const proof = await enrollmentProof(
      await inviteProofKey(SECRET),
      body.invite,
      body.endpoint,
      body.csr,
    );
    if (body.proof !== proof.toBase64({ alphabet: "base64url", omitPadding: true })) {
      return Response.json({ error: { code: "invite_refused", message: "Bad proof" } }, {
        status: 403,
      });
    }
    if (opts.answer) return await opts.answer((name, by) => issue(csr, name, by));
    return Response.json({ certificate: await issue(csr) }, { status: 201 });
  });
  return {
    address: `127.0.0.1:${server.addr.port}`,
    posts,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

async function inviteFor(ca: TestCa, enroll: string[], user = "alice") {
  return encodeInvite({
    user,
    id: ID,
    secret: SECRET,
    caFingerprint: await fingerprintOf(ca.certificate),
    hubs: ["hub.example.net:8888"],
    enroll,
  });
}

/** Asserts `promise` rejects with a `ZtmError` of `code` (and `status`); returns it. */
async function rejectsWith(promise: Promise<unknown>, code: string, status?: number) {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected ${code}`), (err) => (caught = err));
  assert.ok(caught instanceof ZtmError, String(caught));
  assert.equal(caught.code, code, caught.message);
  if (status !== undefined) assert.equal(caught.status, status);
  return caught;
}

Deno.test("an invite enrolls a key made here through the hub, pinned to the invite's CA", async () => {
  const ca = await newCa();
  await using port = await enrollmentPort(ca);
  const dead = `127.0.0.1:${await freePort()}`;
  const join = await enrollWithInvite(
    { invite: await inviteFor(ca, [dead, port.address]), agent: { name: "desk-1" } },
    { log: LOG },
  ) as { ca: string; agent: Record<string, string>; bootstraps: string[] };
  assert.equal(join.ca, ca.pem);
  assert.equal(join.agent.name, "desk-1");
  assert.deepEqual(join.bootstraps, ["hub.example.net:8888"]);
  const cert = parseCertificate(join.agent.certificate);
  assert.match(cert.subject, /CN=alice/);
  // The key was made here and only its public half went out, in the CSR.
  assert.match(join.agent.privateKey, /PRIVATE KEY/);
  assert.equal(port.posts.length, 1);
  assert.ok(!JSON.stringify(port.posts).includes("PRIVATE KEY"));
  const asked = await checkCsr(port.posts[0].csr);
  assert.equal(publicKeyHex(cert), new Uint8Array(asked.publicKey.rawData).toHex());
  assert.equal(port.posts[0].endpoint, "desk-1");
  assert.equal(port.posts[0].invite, ID);

  // Given bootstraps replace the invite's.
  const own = await enrollWithInvite(
    { invite: await inviteFor(ca, [port.address]), bootstraps: ["10.0.0.1:8888"] },
    { log: LOG, endpointName: "box" },
  ) as { agent: Record<string, string>; bootstraps: string[] };
  assert.deepEqual(own.bootstraps, ["10.0.0.1:8888"]);
  assert.equal(own.agent.name, "box");
});

Deno.test("a hub serving another CA than the invite pins is sent nothing", async () => {
  const ca = await newCa();
  const other = await newCa();
  await using port = await enrollmentPort(ca, { served: other.pem });
  const err = await rejectsWith(
    enrollWithInvite({ invite: await inviteFor(ca, [port.address]) }, { log: LOG }),
    "ca_mismatch",
    400,
  );
  assert.match(err.message, /nothing was sent to it/);
  assert.deepEqual(port.posts, []);
});

Deno.test("the CA's refusal is passed on; a certificate for another user, key or CA is refused", async () => {
  const ca = await newCa();
  {
    await using port = await enrollmentPort(ca, {
      answer: () =>
        Promise.resolve(
          Response.json({ error: { code: "invite_used", message: "Used" } }, { status: 409 }),
        ),
    });
    await rejectsWith(
      enrollWithInvite({ invite: await inviteFor(ca, [port.address]) }, { log: LOG }),
      "invite_used",
      409,
    );
  }
  const answers: [
    string,
    (issue: (name?: string, by?: TestCa) => Promise<string>) => Promise<Response>,
  ][] = [
    [
      "another user",
      async (issue) => Response.json({ certificate: await issue("mallory") }, { status: 201 }),
    ],
    ["another key", async () =>
      Response.json({
        certificate: (await newLeaf(ca, { name: "alice", role: "client" })).certificate,
      }, { status: 201 })],
    [
      "another CA",
      async (issue) =>
        Response.json({ certificate: await issue("alice", await newCa()) }, { status: 201 }),
    ],
  ];
  for (const [what, answer] of answers) {
    await using port = await enrollmentPort(ca, { answer });
    const err = await rejectsWith(
      enrollWithInvite({ invite: await inviteFor(ca, [port.address]) }, { log: LOG }),
      "bad_answer",
    );
    assert.match(err.message, /not the one asked for/, what);
  }
  await using noCert = await enrollmentPort(ca, {
    answer: () => Promise.resolve(Response.json({}, { status: 201 })),
  });
  await rejectsWith(
    enrollWithInvite({ invite: await inviteFor(ca, [noCert.address]) }, { log: LOG }),
    "bad_answer",
  );
});

Deno.test("a bad join body or invite is refused before any key is made or port asked", async () => {
  const ca = await newCa();
  const invite = await inviteFor(ca, ["127.0.0.1:1"]);
  await rejectsWith(enrollWithInvite({ invite, ca: "x" }, { log: LOG }), "bad_request", 400);
  await rejectsWith(enrollWithInvite({ invite: 7 }, { log: LOG }), "bad_invite", 400);
  await rejectsWith(enrollWithInvite({ invite: "ztm-invite-1.xx" }, { log: LOG }), "bad_invite");
  await rejectsWith(
    enrollWithInvite({ invite, agent: { name: "a", certificate: "x" } }, { log: LOG }),
    "bad_request",
  );
  await rejectsWith(
    enrollWithInvite({ invite, agent: { name: "a b" } }, { log: LOG }),
    "bad_endpoint_name",
  );
  await rejectsWith(
    enrollWithInvite({ invite: await inviteFor(ca, ["127.0.0.1:1"], "bad user") }, { log: LOG }),
    "bad_invite",
  );
});

Deno.test("when no enrollment port answers, each address is named with why", async () => {
  const ca = await newCa();
  const a = `127.0.0.1:${await freePort()}`;
  const b = `127.0.0.1:${await freePort()}`;
  const err = await rejectsWith(
    enrollWithInvite({ invite: await inviteFor(ca, [a, b]) }, { log: LOG }),
    "hub_unreachable",
    503,
  );
  assert.match(
    err.message,
    new RegExp(`^No enrollment port of the invite answered: ${a}: .+; ${b}: .+`),
  );
});
