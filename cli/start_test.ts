/**
 * `ztm start`: the hub names it picks, a bad flag refused before anything is
 * made, and (in a real process, as `main` ends in signal handling) `--mesh`
 * and `--names` carried into the mesh it joins and the join command it
 * prints for a second machine. tests/cli/start_test.ts covers the restart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultHubNames, START_COMMAND } from "./start.ts";
import { api, eventually, Harness, ROOT, run } from "../tests/fixtures/harness.ts";
import { startAllInOne } from "../tests/fixtures/cli_helpers.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";

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
  await using temp = await tempDir("ztm-start-unit-");
  const dir = join(temp.path, "state");
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
  const { proc, url } = await startAllInOne(h, dir, {
    args: ["--mesh=lab", "--names=hub.example.test,192.0.2.9"],
    timeoutMs: 30_000,
  });
  await eventually(() => proc.raw.some((l) => l.startsWith("(another user")), 10_000, "the banner");
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
  const res = await api(url, "GET", "/api/meshes/lab");
  const mesh = res.body;
  assert.equal(res.status, 200);
  assert.equal(mesh.user, "root");
  assert.deepEqual(mesh.bootstraps, [`127.0.0.1:${hubPort}`]);
  assert.equal((await proc.stop()).code, 0);
});
