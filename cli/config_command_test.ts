/**
 * `ztm config check FILE`: what it counts in a good file, each problem of a
 * bad one with its line (sorted), which component a top-level key is
 * checked against, and the difference between a bad `--for` (usage) and a
 * file it cannot read (a failure).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UsageError } from "@ztm/shared/flags";
import { CONFIG_CHECK } from "./config_command.ts";
import { runCommand } from "./_fixture.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";

/** A temp dir that writes config files (`file(text)` returns the new file's path). */
async function configDir() {
  const temp = await tempDir("ztm-config-check-");
  const dir = temp.path;
  let count = 0;
  return {
    dir,
    file(text: string, ext = "toml"): string {
      const path = join(dir, `c${++count}.${ext}`);
      Deno.writeTextFileSync(path, text);
      return path;
    },
    [Symbol.asyncDispose]: () => temp[Symbol.asyncDispose](),
  };
}

Deno.test("ztm config check counts what a good file sets, per component and top level", async () => {
  await using files = await configDir();
  const file = files.file;
  const good = file(
    [
      'log_level = "debug"',
      "[hub]",
      'ca = "127.0.0.1:9999"',
      'names = ["hub.example.com"]',
      "[agent]",
      'name = "web-1"',
      "[agent.meshes.work]",
      'hubs = ["hub.example.com:8888"]',
      'ca = "ca.crt"',
      'certificate = "web-1.crt"',
      'key = "web-1.key"',
    ].join("\n"),
  );
  assert.equal(
    await runCommand(CONFIG_CHECK, [good]),
    `${good}: valid (1 top-level, 2 for hub, 1 for agent, 1 declared mesh(es))`,
  );
  const forHub = file('ca = "127.0.0.1:9999"\nlisten = "0.0.0.0:8888"\n');
  assert.equal(
    await runCommand(CONFIG_CHECK, [forHub, "--for=hub"]),
    `${forHub}: valid (2 top-level for hub)`,
  );
  // A top-level key only one component has is that component's.
  const agentKey = file('name = "web-1"\n');
  assert.equal(await runCommand(CONFIG_CHECK, [agentKey]), `${agentKey}: valid (1 top-level)`);
  const empty = file("{}", "json");
  assert.equal(await runCommand(CONFIG_CHECK, [empty]), `${empty}: valid (no flags)`);
});

Deno.test("ztm config check lists each problem with its line, in line order", async () => {
  await using files = await configDir();
  const file = files.file;
  const bad = file(
    ['frobnicate = "yes"', 'listen = "127.0.0.1:99999"', "[hub]", "colour = 1"].join("\n"),
  );
  await assert.rejects(runCommand(CONFIG_CHECK, [bad]), (err: Error) => {
    assert.ok(!(err instanceof UsageError), "a bad file is a failure (exit 1), not a usage error");
    const lines = err.message.split("\n");
    assert.equal(lines.length, 3, err.message);
    assert.equal(lines[0], `${bad}:1: no component has a flag "frobnicate"`);
    assert.match(lines[1], new RegExp(`^${bad}:2: listen: Bad port in address "127.0.0.1:99999"`));
    assert.match(lines[2], new RegExp(`^${bad}:4: ztm hub has no flag "colour"`));
    return true;
  });
  // JSON may put a section before a top-level key: the problems still come in line order.
  const json = file('{\n  "hub": {\n    "colour": 1\n  },\n  "frobnicate": "yes"\n}\n', "json");
  await assert.rejects(runCommand(CONFIG_CHECK, [json]), (err: Error) => {
    assert.deepEqual(err.message.split("\n").map((l) => l.split(":")[1]), ["3", "5"]);
    return true;
  });
  // The agent's declared meshes are checked too.
  const declared = file(
    '[agent.meshes.work]\nhubs = ["hub.example.com:8888"]\nca = "ca.crt"\ncertificate = "w.crt"\n',
  );
  await assert.rejects(
    runCommand(CONFIG_CHECK, [declared]),
    new Error(`${declared}:1: agent.meshes.work: key (a file) is required`),
  );
  // With --for, a top-level key is checked against that component only.
  const agentOnly = file('name = "web-1"\n');
  await assert.rejects(runCommand(CONFIG_CHECK, [agentOnly, "--for=ca"]), (err: Error) => {
    assert.match(err.message, new RegExp(`^${agentOnly}:1: ztm ca has no flag "name"`));
    return true;
  });
});

Deno.test("ztm config check refuses an unknown --for as usage, and a file it cannot read as a failure", async () => {
  await using files = await configDir();
  const file = files.file;
  const good = file('[agent]\nname = "a"\n');
  await assert.rejects(
    runCommand(CONFIG_CHECK, [good, "--for=relay"]),
    new UsageError('--for must be one of ca, hub, agent, start, got "relay"'),
  );
  const missing = join(files.dir, "nope.toml");
  await assert.rejects(runCommand(CONFIG_CHECK, [missing]), (err: Error) => {
    assert.ok(!(err instanceof UsageError));
    assert.ok(err.message.startsWith(`${missing}: cannot read --config: `), err.message);
    return true;
  });
  const broken = file("[agent\n");
  await assert.rejects(runCommand(CONFIG_CHECK, [broken]), /not valid TOML/);
});
