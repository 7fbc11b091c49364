/**
 * Attacks on enrollment, against a real CA and hub: the enrollment port is
 * driven directly, as a device, a hostile hub (which sees every enrollment it
 * carries) and a guesser would.
 *
 * - A hub that replays an enrollment, or reuses its proof for another
 *   endpoint or for a key of its own, gets nothing, and burns no use.
 * - A device holding alice's invite cannot get a certificate for bob.
 * - 10,000 wrong secrets from one address all get 4xx, almost all 429, leave
 *   the CA's database as it was, and cost the mesh nothing: a device on
 *   another address enrolls right after.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { DatabaseSync } from "node:sqlite";
import { generateKeyPair, x509 } from "../../shared/certs.ts";
import { decodeInvite, enrollmentProof, inviteProofKey } from "../../shared/invite.ts";
import { Harness } from "../fixtures/harness.ts";
import { enrollmentPortOf, inviteFor } from "../fixtures/ca_helpers.ts";

interface Reply {
  status: number;
  body: string;
}

async function makeCsr(user: string): Promise<string> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${user}`,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  return csr.toString("pem");
}

async function enrollment(text: string, endpoint: string, csr: string) {
  const inv = decodeInvite(text);
  const proof = await enrollmentProof(await inviteProofKey(inv.secret), inv.id, endpoint, csr);
  return {
    invite: inv.id,
    endpoint,
    csr,
    proof: proof.toBase64({ alphabet: "base64url", omitPadding: true }),
  };
}

/** POSTs `body` to the enrollment port from `localAddress`, over TLS checked against `ca`. */
function post(
  port: number,
  ca: string,
  body: unknown,
  agent?: https.Agent,
  localAddress = "127.0.0.1",
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      hostname: "127.0.0.1",
      servername: "localhost",
      port,
      path: "/enroll",
      method: "POST",
      ca,
      agent,
      localAddress,
      headers: { "content-type": "application/json" },
      timeout: 15_000,
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

function code(r: Reply): string {
  try {
    return JSON.parse(r.body).error?.code ?? "";
  } catch {
    return "";
  }
}

function tableDump(database: string): string {
  const db = new DatabaseSync(database, { readOnly: true });
  try {
    return JSON.stringify([
      db.prepare("SELECT id, uses_left, uses, revoked_at FROM invites ORDER BY id").all(),
      db.prepare("SELECT serial FROM certificates ORDER BY serial").all(),
    ]);
  } finally {
    db.close();
  }
}

/** A CA and a hub announced to it: the hub's enrollment port and the CA certificate PEM. */
async function enrollingHub(h: Harness) {
  const ca = await h.startCa();
  const port = await enrollmentPortOf(await h.startHub(ca));
  const caPem = await (await fetch(`${ca.url}/api/certificates/ca`)).text();
  return { ca, port, caPem };
}

Deno.test("a hub replaying or reusing an enrollment gets nothing; a device cannot enroll another user", async () => {
  await using h = new Harness();
  const { ca, port, caPem } = await enrollingHub(h);

  const twoUses = await inviteFor(ca.url, "alice", { uses: 2 });
  const csr = await makeCsr("alice");
  const body = await enrollment(twoUses, "dev1", csr);
  const first = await post(port, caPem, body);
  assert.equal(first.status, 201, first.body);
  const issued = JSON.parse(first.body);
  assert.equal(issued.name, "alice");
  assert.equal(issued.endpoint, "dev1");

  // The hub saw that request. Replayed as is: refused (that device has its certificate).
  const replay = await post(port, caPem, body);
  assert.equal(replay.status, 409, replay.body);
  // Its proof, for another endpoint name: refused, no oracle.
  const renamed = await post(port, caPem, { ...body, endpoint: "hub-box" });
  assert.equal(renamed.status, 403);
  assert.equal(code(renamed), "invite_refused");
  // Its proof, with a CSR of the hub's own key: refused the same way.
  const stolen = await post(port, caPem, { ...body, csr: await makeCsr("alice") });
  assert.equal(stolen.status, 403);
  assert.equal(code(stolen), "invite_refused");
  // None of that burned the invite's second use.
  const listed = await (await fetch(`${ca.url}/api/invites`)).json();
  assert.equal(listed[0].usesLeft, 1);

  // A device holding alice's invite asks for bob: refused, and the use is given back.
  const forBob = await post(port, caPem, await enrollment(twoUses, "dev2", await makeCsr("bob")));
  assert.equal(forBob.status, 400, forBob.body);
  assert.equal(code(forBob), "csr_name_mismatch");
  assert.equal((await (await fetch(`${ca.url}/api/invites`)).json())[0].usesLeft, 1);

  // A single-use invite replayed after its use: refused as used.
  const once = await inviteFor(ca.url, "alice", { uses: 1 });
  const onceBody = await enrollment(once, "dev3", await makeCsr("alice"));
  assert.equal((await post(port, caPem, onceBody)).status, 201);
  const onceAgain = await post(port, caPem, { ...onceBody });
  assert.equal(onceAgain.status, 409);
  assert.equal(code(onceAgain), "invite_used");
});

Deno.test("10,000 wrong invite secrets through the hub get 4xx, are rate-limited and leave no state", async () => {
  await using h = new Harness();
  const { ca, port, caPem } = await enrollingHub(h);
  const real = await inviteFor(ca.url, "alice", { uses: 1 });
  const id = decodeInvite(real).id;
  const csr = await makeCsr("alice");
  const before = tableDump(ca.database);

  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  const counts = new Map<string, number>();
  const total = 10_000;
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const secret = crypto.getRandomValues(new Uint8Array(32));
      const proof = await enrollmentProof(await inviteProofKey(secret), id, "guess", csr);
      const r = await post(
        port,
        caPem,
        {
          // Most guesses aim at the real invite's id, some at ids that do not exist.
          invite: i % 10 === 0 ? "0123456789abcdef" : id,
          endpoint: "guess",
          csr,
          proof: proof.toBase64({ alphabet: "base64url", omitPadding: true }),
        },
        agent,
        "127.0.0.2",
      );
      const key = `${r.status} ${code(r)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  agent.destroy();
  console.log("replies to 10,000 wrong secrets:", JSON.stringify(Object.fromEntries(counts)));
  let sum = 0;
  for (const [key, n] of counts) {
    sum += n;
    assert.match(key, /^(403 invite_refused|429 slow_down)$/, `unexpected reply ${key}`);
  }
  assert.equal(sum, total);
  assert.ok((counts.get("429 slow_down") ?? 0) > total * 0.95, "rate-limited");
  // An unknown id and a wrong secret for a real one read the same: no oracle.
  assert.equal(tableDump(ca.database), before, "no state changed at the CA");

  // The guesser paid, not the mesh: a device on another address enrolls at once.
  const ok = await post(port, caPem, await enrollment(real, "laptop", await makeCsr("alice")));
  assert.equal(ok.status, 201, ok.body);
});
