/**
 * `ztm start`: the hub names it picks, a bad flag refused before anything is
 * made, and (in a real process, as `main` ends in signal handling) `--mesh`
 * and `--names` carried into the mesh it joins and the join command it
 * prints for a second machine. tests/cli/start_test.ts covers the restart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultHubNames, START_COMMAND } from "./start.ts";
import { eventually, Harness, ROOT, run } from "../tests/fixtures/harness.ts";

Deno.test("defaultHubNames puts loopback first, then this machine's names, once each, without link-local", () => {
  const names = defaultHubNames();
  assert.deepEqual(names.slice(0, 2), ["localhost", "127.0.0.1"]);
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.includes(Deno.hostname()));
  for (const n of names) {
    assert.ok(!/^fe80:/i.test(n), n);
    assert.match(n, /^[A-Za-z0-9.:-]+$/);
  }
});

Deno.test("ztm start refuses a bad flag with one line and its usage, and makes nothing", async () => {
  await using h = new Harness();
  const dir = join(await h.tempDir(), "state");
  const out = await run(
    Deno.execPath(),
    ["run", "-A", join(ROOT, "cli/start.ts"), `--data-dir=${dir}`, "--hub-listen=nowhere:99999"],
    { allowFail: true },
  );
  assert.equal(out.code, 2);
  const lines = out.stderr.split("\n");
  assert.equal(
    lines[0],
    'ztm start: --hub-listen: Bad port in address "nowhere:99999": use 0 to 65535',
  );
  assert.ok(out.stderr.includes(`Usage: ${START_COMMAND.name} [flags]`), out.stderr);
  assert.throws(() => Deno.statSync(dir), Deno.errors.NotFound);
});

Deno.test("ztm start joins the --mesh it is given and tells a second machine to dial the first of --names", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-start-unit-");
  const proc = h.spawn("start", "cli/start.ts", [
    `--data-dir=${dir}`,
    "--mesh=lab",
    "--names=hub.example.test,192.0.2.9",
    "--ca-listen=127.0.0.1:0",
    "--hub-listen=127.0.0.1:0",
    "--data-listen=127.0.0.1:0",
    "--agent-listen=127.0.0.1:0",
  ]);
  await eventually(() => proc.raw.some((l) => l.startsWith("(another user")), 30_000, "the banner");
  const banner = proc.raw.join("\n");
  const hubPort = /^ {2}hub {8}127\.0\.0\.1:(\d+) /m.exec(banner)?.[1];
  assert.ok(hubPort, banner);
  assert.ok(
    banner.includes("(its certificate names localhost, 127.0.0.1, hub.example.test, 192.0.2.9)"),
    banner,
  );
  assert.ok(
    banner.includes(
      `  ztm join lab --hub=hub.example.test:${hubPort} --ca=ca.crt --cert=root.crt --key=root.key`,
    ),
    banner,
  );
  assert.ok(banner.includes('(mesh "lab", user root)'), banner);
  for (const f of ["root.key", "root.crt", "ca.crt"]) {
    assert.equal(Deno.statSync(join(dir, f)).mode! & 0o777, 0o600, f);
  }
  const apiUrl = /agent API {2}(http:\/\/\S+)/.exec(banner)![1];
  const token = Deno.readTextFileSync(join(dir, "agent.db.token")).trim();
  const res = await fetch(`${apiUrl}/api/meshes/lab`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const mesh = await res.json();
  assert.equal(res.status, 200);
  assert.equal(mesh.user, "root");
  assert.deepEqual(mesh.bootstraps, [`127.0.0.1:${hubPort}`]);
  assert.equal((await proc.stop()).code, 0);
});
