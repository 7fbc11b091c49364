/**
 * A session does not outlive its certificate, with real processes: a CA
 * started with `--cert-lifetime=60s` issues a user certificate that expires a
 * minute later; the hub, which TLS lets check expiry only at the handshake,
 * ends that user's session (and the tunnels on it) when notAfter passes, and
 * the agent's redials are refused. Before, a session opened before notAfter
 * was served for ever. (Agents renew their certificates through the hub,
 * `renewal_test.ts`: here the CA is stopped once the agent is in, so the
 * renewal fails and the certificate really expires.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, Harness, issueUser, ROOT, run } from "../fixtures/harness.ts";
import { meshStatus, never, startJoinedAgent } from "../fixtures/mesh_fixture.ts";
import { parseCertificate } from "@ztm/shared/certs";

Deno.test("hub ends a session when its certificate expires, and the agent stays out", async () => {
  await using h = new Harness();
  const ca = await h.startCa({ args: ["--cert-lifetime=60s"] });
  const hub = await h.startHub(ca);
  const alice = await issueUser(ca.url, "alice");
  const notAfter = parseCertificate(alice.certificate).notAfter.getTime();
  const lifetime = notAfter - Date.now();
  assert.ok(lifetime > 0 && lifetime <= 60_000, `alice's certificate lives ${lifetime} ms`);

  const a = await startJoinedAgent(h, hub.address, alice);
  assert.ok(Date.now() < notAfter, "the agent connected before the certificate expired");
  await ca.stop();
  const closed = await hub.waitForLog(
    (l) => l.msg === "session closed: certificate expired" && l.user === "alice",
    lifetime + 30_000,
  );
  assert.ok(Date.parse(String(closed.time)) >= notAfter, "closed before notAfter");
  // The agent sees the close, and its redials are refused from then on.
  await eventually(
    async () => (await meshStatus(a)).status.connected === false,
    20_000,
    "alice's agent seeing the session end",
  );
  await never(
    async () => (await meshStatus(a)).status.connected === true,
    3_000,
    "alice's agent connected with an expired certificate",
  );
  assert.ok(!(await meshStatus(a)).status.connected);
});

Deno.test("ztm ca --cert-lifetime is in --help and a bad value exits 2 naming it", async () => {
  const ca = (args: string[]) =>
    run(Deno.execPath(), ["run", "--allow-all", join(ROOT, "ca/main.ts"), ...args], {
      cwd: ROOT,
      allowFail: true,
    });
  const help = await ca(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(
    help.stdout,
    /--cert-lifetime=STRING\s+lifetime of the user certificates.*\(default: 365d\)/,
  );
  for (const bad of ["5x", "30s", "0d", "99999d", "1.5h"]) {
    const out = await ca([`--cert-lifetime=${bad}`, "--database=/nonexistent/ca.db"]);
    assert.equal(out.code, 2, `${bad}: ${out.stderr}`);
    assert.match(out.stderr, new RegExp(`--cert-lifetime must be .*"${bad.replace(".", "\\.")}"`));
  }
});
