/**
 * Joining with only an invite: `ztm invite alice` on the CA's machine prints
 * one string (and a QR code); `ztm join work --invite=…` on a new agent makes
 * the key there, enrolls through the hub's enrollment port and joins. The
 * key is nowhere but in that agent's database: not in the CA's database, the
 * hub's files or any process's output. The same invite cannot be used twice,
 * after expiry or revocation, or with a tampered CA fingerprint (the agent
 * refuses the hub's CA and sends nothing); two devices of alice joined with
 * two invites, and revoking one cuts that device only.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { decodeInvite, encodeInvite } from "../../shared/invite.ts";
import { api, eventually, Harness } from "../fixtures/harness.ts";
import {
  databaseFiles,
  enrollmentPortOf,
  indexOfBytes,
  keyFingerprints,
} from "../fixtures/ca_helpers.ts";
import { agentFlags, ztm, ztmOk } from "../fixtures/cli_helpers.ts";
import { rememberPrivateKey } from "../fixtures/secret_scan.ts";

/** Every regular file under `dir`. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await filesUnder(path));
    else if (e.isFile) out.push(path);
  }
  return out;
}

function agentKey(database: string): string {
  const db = new DatabaseSync(database, { readOnly: true });
  try {
    return (db.prepare("SELECT private_key FROM meshes").get() as { private_key: string })
      .private_key;
  } finally {
    db.close();
  }
}

async function invite(caUrl: string, args: string[] = []): Promise<{ text: string; id: string }> {
  const out = await ztmOk(["invite", "alice", `--ca-url=${caUrl}`, ...args]);
  const text = out.split("\n").find((l) => l.startsWith("ztm-invite-1."))!;
  assert.ok(text, out);
  return { text, id: decodeInvite(text).id };
}

Deno.test("a new machine joins with only an invite; the invite works once; its key never leaves it", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const enrollPort = await enrollmentPortOf(hub);

  // The CA learned the hub's addresses from the hub itself: the invite carries them.
  const out = await ztmOk(["invite", "alice", `--ca-url=${ca.url}`]);
  assert.match(out, /[█▀▄]{20,}/, "a QR code is printed");
  const first = out.split("\n").find((l) => l.startsWith("ztm-invite-1."))!;
  const payload = decodeInvite(first);
  assert.deepEqual(payload.hubs, [hub.address]);
  assert.deepEqual(payload.enroll, [`localhost:${enrollPort}`]);
  assert.equal(payload.user, "alice");

  const laptop = await h.startAgent({ name: "laptop" });
  const started = performance.now();
  const joined = await ztmOk([
    "join",
    "work",
    `--invite=${first}`,
    "--name=laptop",
    ...agentFlags(laptop),
  ]);
  const seconds = (performance.now() - started) / 1000;
  console.log(`invite to joined (ztm join, connected): ${seconds.toFixed(2)} s`);
  assert.match(joined, /Joined mesh "work" as user alice: endpoint laptop .*connected to/);
  const key = agentKey(laptop.database);
  rememberPrivateKey(key); // the harness scans every process's output for it
  const status = (await api(laptop.url, "GET", "/api/meshes/work")).body;
  assert.equal(status.status.connected, true);
  assert.equal(status.user, "alice");

  // The key is in no file of the CA or the hub.
  const marks = await keyFingerprints(key);
  const files = [...await databaseFiles(ca.database), ...await filesUnder(hub.dir)];
  for (const file of files) {
    const bytes = await Deno.readFile(file);
    for (const m of marks) assert.equal(indexOfBytes(bytes, m), -1, `key material in ${file}`);
  }
  // The CA lists the device's certificate with its endpoint, and the invite as used.
  const certs = JSON.parse(await ztmOk(["cert", "list", `--ca-url=${ca.url}`, "--json"]));
  assert.deepEqual(
    certs.filter((c: { role: string }) => c.role === "user").map((
      c: { name: string; endpoint: string },
    ) => [c.name, c.endpoint]),
    [["alice", "laptop"]],
  );
  const invites = await ztmOk(["invites", "list", `--ca-url=${ca.url}`]);
  assert.match(invites, new RegExp(`${payload.id}\\s+alice\\s+used\\s+1\\s+0`));

  // Used: a second machine with the same string is refused and joins nothing.
  const desktop = await h.startAgent({ name: "desktop" });
  const again = await ztm([
    "join",
    "work",
    `--invite=${first}`,
    "--name=desktop",
    ...agentFlags(desktop),
  ]);
  assert.equal(again.code, 1, again.stdout);
  assert.match(again.stderr, /This invite has been used already/);
  assert.deepEqual((await api(desktop.url, "GET", "/api/meshes")).body, []);

  // A second invite joins the desktop; revoking the laptop cuts the laptop only.
  const second = await invite(ca.url);
  await ztmOk([
    "join",
    "work",
    `--invite=${second.text}`,
    "--name=desktop",
    ...agentFlags(desktop),
  ]);
  rememberPrivateKey(agentKey(desktop.database));
  await ztmOk(["cert", "revoke", "alice", "--endpoint=laptop", `--ca-url=${ca.url}`]);
  await eventually(
    async () => (await api(laptop.url, "GET", "/api/meshes/work")).body.status.connected === false,
    20_000,
    "the laptop cut off",
  );
  assert.equal((await api(desktop.url, "GET", "/api/meshes/work")).body.status.connected, true);
});

Deno.test("expired, revoked and CA-tampered invites are refused", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  await hub.waitForLog((l) => l.msg === "hub announced to the ca");
  const agent = await h.startAgent();
  const join = (text: string) =>
    ztm(["join", "work", `--invite=${text}`, "--name=box", ...agentFlags(agent)]);

  const short = await invite(ca.url, ["--expires=1s"]);
  await new Promise((r) => setTimeout(r, 1_500));
  const expired = await join(short.text);
  assert.equal(expired.code, 1);
  assert.match(expired.stderr, /This invite has expired/);

  const revoked = await invite(ca.url);
  assert.match(
    await ztmOk(["invites", "revoke", revoked.id, `--ca-url=${ca.url}`]),
    /Revoked invite/,
  );
  const refused = await join(revoked.text);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /This invite was revoked/);

  // A CA fingerprint changed in the string: the agent refuses the hub's CA before it sends
  // anything, so the real invite is still unused afterwards.
  const good = await invite(ca.url);
  const p = decodeInvite(good.text);
  const tampered = encodeInvite({ ...p, caFingerprint: "ab".repeat(32) });
  const mismatch = await join(tampered);
  assert.equal(mismatch.code, 1);
  assert.match(mismatch.stderr, /fingerprint is not the one in the invite/);
  const listed = JSON.parse(await ztmOk(["invites", "list", `--ca-url=${ca.url}`, "--json"]));
  assert.equal(listed.find((i: { id: string }) => i.id === good.id).state, "active");
  // A string cut short is refused as not an invite.
  const cut = await join(good.text.slice(0, 60));
  assert.equal(cut.code, 1);
  assert.match(cut.stderr, /not a ztm invite/);
  // The real one still works.
  await ztmOk(["join", "work", `--invite=${good.text}`, "--name=box", ...agentFlags(agent)]);
  rememberPrivateKey(agentKey(agent.database));
  assert.deepEqual(
    (await api(agent.url, "GET", "/api/meshes")).body.map((m: { name: string }) => m.name),
    ["work"],
  );
});

Deno.test("ztm start's CA makes invites that a second machine joins with", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-start-invite-");
  const start = h.spawn("start", "cli/start.ts", [
    `--data-dir=${dir}`,
    "--ca-listen=127.0.0.1:0",
    "--hub-listen=127.0.0.2:0",
    "--data-listen=127.0.0.2:0",
    "--agent-listen=127.0.0.1:0",
    "--names=127.0.0.2",
  ]);
  const caLine = await start.waitForLog(
    (l) => l.component === "ca" && l.msg === "listening",
    30_000,
  );
  const announced = await start.waitForLog((l) => l.msg === "hub announced to the ca", 30_000);
  const caUrl = `http://${caLine.addr}`;
  const text = (await invite(caUrl)).text;
  assert.deepEqual(decodeInvite(text).hubs, [String(announced.addr).split(",")[0]]);
  const second = await h.startAgent({ name: "second" });
  const out = await ztmOk([
    "join",
    "local",
    `--invite=${text}`,
    "--name=second",
    ...agentFlags(second),
  ]);
  assert.match(out, /as user alice: endpoint second .*connected to 127\.0\.0\.2:/);
  rememberPrivateKey(agentKey(second.database));
});
