/**
 * `--config=FILE` (TOML or JSON) for every component, the command line over
 * it, and `ztm config check` naming the lines of what is wrong.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ztm } from "../fixtures/cli_helpers.ts";
import { Harness } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";

Deno.test("an agent takes its flags from a TOML file, relative paths from the file's folder, and the command line wins", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-config-");
  const [filePort, flagPort] = [await freePort(), await freePort()];
  const path = join(dir, "agent.toml");
  await Deno.writeTextFile(
    path,
    `# the agent of this server\nlisten = "127.0.0.1:${filePort}"\n\n[agent]\ndatabase = "state/agent.db"\nname = "from-file"\n`,
  );
  await Deno.mkdir(join(dir, "state"));
  const fromFile = await h.spawnService("agent", "agent/main.ts", [`--config=${path}`]);
  assertEquals(fromFile.port, filePort);
  await Deno.stat(join(dir, "state", "agent.db")); // the path was the file's folder's
  await fromFile.stop();
  const overridden = await h.spawnService("agent", "agent/main.ts", [
    `--config=${path}`,
    `--listen=127.0.0.1:${flagPort}`,
  ]);
  assertEquals(overridden.port, flagPort);
});

Deno.test("a component refuses a config file with unknown flags or bad values, naming file and line", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-config-");
  const path = join(dir, "hub.toml");
  await Deno.writeTextFile(
    path,
    `ca = "127.0.0.1:9999"\nlistn = "0.0.0.0:8888"\n[hub]\nmax-sessions = "many"\nnames = ["a.example", "b.example"]\n`,
  );
  const hub = h.spawn("hub", "hub/main.ts", [`--config=${path}`]);
  assertEquals((await hub.child.status).code, 2);
  await hub.stop(); // drains its output
  const err = hub.raw.join("\n");
  assert(err.includes(`${path}:2: ztm hub has no flag "listn"`), err);
  assert(err.includes(`${path}:4: max-sessions: must be a whole number`), err);
  const broken = join(dir, "broken.toml");
  await Deno.writeTextFile(broken, `listen = "127.0.0.1:0"\nname =\n`);
  const agent = h.spawn("agent", "agent/main.ts", [`--config=${broken}`]);
  assertEquals((await agent.child.status).code, 2);
  await agent.stop();
  assert(agent.raw.join("\n").includes(`${broken}:2: not valid TOML`), agent.raw.join("\n"));
});

Deno.test("ztm config check passes a good file and lists each problem of a bad one with its line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ztm-config-" });
  try {
    const good = join(dir, "mesh.toml");
    await Deno.writeTextFile(
      good,
      `[ca]\nlisten = "127.0.0.1:9999"\n[hub]\nca = "127.0.0.1:9999"\nnames = ["hub.example.com"]\n[agent]\nname = "web-1"\n`,
    );
    const ok = await ztm(["config", "check", good]);
    assertEquals([ok.code, ok.stdout], [0, `${good}: valid (1 for ca, 2 for hub, 1 for agent)\n`]);
    const bad = join(dir, "bad.json");
    await Deno.writeTextFile(
      bad,
      `{\n  "listen": "127.0.0.1:99999",\n  "hub": {\n    "max_streams": -1,\n    "colour": "blue"\n  }\n}\n`,
    );
    const no = await ztm(["config", "check", bad]);
    assertEquals(no.code, 1);
    const lines = no.stderr.trim().split("\n");
    assertEquals(lines.length, 3, no.stderr);
    assert(lines[0].includes(`${bad}:2: listen: Bad port in address "127.0.0.1:99999"`), no.stderr);
    assert(lines[1].includes(`${bad}:4: max_streams: must be a whole number`), no.stderr);
    assert(lines[2].includes(`${bad}:5: ztm hub has no flag "colour"`), no.stderr);
    const forHub = await ztm(["config", "check", good, "--for=relay"]);
    assertEquals(forHub.code, 2, forHub.stderr);
    const missing = await ztm(["config", "check", join(dir, "nope.toml")]);
    assertEquals(missing.code, 1);
    assert(missing.stderr.includes("cannot read --config"), missing.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
