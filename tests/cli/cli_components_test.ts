/**
 * `ztm ca|hub|agent|start` run the components as their own entry points do:
 * the quick-start test runs a CA, a hub and agents this way; here, stopping
 * `ztm hub` stops the hub, and `ztm start` serves an agent that `ztm status`
 * finds without any flag.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ztm } from "../fixtures/cli_helpers.ts";
import { eventually, Harness, ROOT, run } from "../fixtures/harness.ts";

Deno.test("ztm hub passes SIGTERM on: the hub stops, its port closes, and ztm exits 0", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.spawnService("hub", "cli/main.ts", [
    "hub",
    `--ca=127.0.0.1:${ca.port}`,
    "--listen=127.0.0.1:0",
    "--data-listen=off",
    `--data-dir=${await h.tempDir("ztm-cli-hub-")}`,
    `--ca-token-file=${ca.database}.token`,
  ]);
  // A TLS handshake needs the hub's event loop, so the hub is past its start (and has its
  // signal handlers) once this completes; a signal before then ends any hub process at once.
  const caPem = await (await fetch(`${ca.url}/api/certificates/ca`)).text();
  const conn = await Deno.connectTls({ hostname: "127.0.0.1", port: hub.port, caCerts: [caPem] });
  await conn.handshake();
  conn.close();
  const status = await hub.stop();
  assertEquals(status.code, 0, hub.tail());
  assert(hub.logs.some((l) => l.msg === "stopping"), "the hub itself stopped");
  await eventually(
    () =>
      Deno.connect({ hostname: "127.0.0.1", port: hub.port }).then(
        (c) => (c.close(), false),
        () => true,
      ),
    5_000,
    "the hub's port closes",
  );
});

Deno.test("ztm start runs everything, and ztm status finds its agent's token under ~/.ztm", async () => {
  await using h = new Harness();
  const home = await h.tempDir("ztm-cli-home-");
  const start = h.spawn("start", "cli/main.ts", [
    "start",
    `--data-dir=${join(home, ".ztm")}`,
    "--ca-listen=127.0.0.1:0",
    "--hub-listen=127.0.0.1:0",
    "--data-listen=127.0.0.1:0",
    "--agent-listen=127.0.0.1:0",
  ]);
  const banner = await eventually(
    () => start.raw.find((l) => l.includes("agent API")),
    20_000,
    "the banner",
  );
  const agent = /http:\/\/([\d.]+:\d+)/.exec(banner)![1];
  const status = await eventually(
    async () => {
      const out = await ztm(["status", `--agent=${agent}`], { home });
      assertEquals(out.code, 0, out.stderr);
      return /^local\s+root\s+\S+\s+connected\s/m.test(out.stdout) ? out.stdout : undefined;
    },
    15_000,
    "ztm status shows the local mesh connected",
  );
  assert(status.startsWith(`agent http://${agent}: 1 mesh\n`), status);
});

Deno.test("deno task ztm works in the caller's directory: files land where it was run", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const here = await h.tempDir("ztm-cli-cwd-");
  const env = Deno.env.toObject();
  delete env.INIT_CWD; // as in a shell; deno task sets it to the caller's directory
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      `--config=${join(ROOT, "deno.json")}`,
      "ztm",
      "cert",
      "new",
      "carol",
      `--ca-url=${ca.url}`,
    ],
    cwd: here,
    clearEnv: true,
    env,
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  assert(stdout.includes("Wrote carol.key (0600), carol.crt and ca.crt"), stdout);
  assertEquals([...Deno.readDirSync(here)].map((e) => e.name).sort(), [
    "ca.crt",
    "carol.crt",
    "carol.key",
  ]);
});

Deno.test("the ca, hub and agent packages' ./main exports run their component (deno run -A jsr:@ztm/ca/main)", async () => {
  for (
    const [entry, usage] of [
      ["ca/main.ts", "Usage: ztm ca"],
      ["hub/main.ts", "Usage: ztm hub"],
      ["agent/main.ts", "Usage: ztm agent"],
    ]
  ) {
    const out = await run(Deno.execPath(), ["run", "--allow-all", join(ROOT, entry), "--help"]);
    assert(out.stdout.startsWith(usage), `${entry}: ${out.stdout}`);
  }
});

Deno.test("deno task compile --dry-run lists one deno compile per target", async () => {
  const out = await run(Deno.execPath(), [
    "task",
    "compile",
    "--dry-run",
    "--out-dir=/tmp/ztm-dist",
  ], {
    cwd: ROOT,
  });
  const lines = out.stdout.trim().split("\n");
  assertEquals(lines.length, 5);
  for (
    const target of ["x86_64-unknown-linux-gnu", "aarch64-apple-darwin", "x86_64-pc-windows-msvc"]
  ) {
    assert(
      lines.some((l) =>
        l.startsWith("deno compile --allow-all ") && l.includes(`--target=${target}`) &&
        l.includes(`--output=/tmp/ztm-dist/ztm-${target}`) && l.endsWith("/cli/main.ts")
      ),
      `${target}: ${out.stdout}`,
    );
  }
});
