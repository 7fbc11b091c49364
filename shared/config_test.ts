import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, readConfigFile, withConfig } from "./config.ts";
import type { CommandSpec } from "./flags.ts";

const SPEC: CommandSpec = {
  name: "ztm hub",
  summary: "test",
  flags: [
    { name: "ca", kind: "address", help: "" },
    { name: "names", kind: "addresses", default: "localhost", help: "" },
    { name: "data-dir", kind: "path", default: "~/.ztm-hub", help: "" },
    { name: "max-sessions", kind: "integer", default: "1", help: "" },
    { name: "quiet", kind: "boolean", help: "" },
    { name: "udp-flows", kind: "integer", default: "2", oldSpellings: ["udp-sessions"], help: "" },
  ],
};

function file(name: string, text: string): string {
  const dir = Deno.makeTempDirSync({ prefix: "ztm-config-unit-" });
  const path = join(dir, name);
  Deno.writeTextFileSync(path, text);
  return path;
}

Deno.test("config: top level, then the component's table, then the command line", () => {
  const path = file(
    "hub.toml",
    'ca = "a:1"\nmax-sessions = 5\n[hub]\nmax_sessions = 7\nnames = ["x", "y:9"]\nquiet = true\n[agent]\nname = "n"\n',
  );
  const args = withConfig(SPEC, ["--ca=b:2", `--config=${path}`]);
  assert.deepEqual(args, [
    "--ca=a:1",
    "--max-sessions=5",
    "--max-sessions=7",
    "--names=x,y:9",
    "--quiet=true",
    "--ca=b:2",
  ]);
});

Deno.test("config: a relative path means the file's folder; ~ and absolute paths stay", () => {
  const path = file("hub.json", '{"data-dir": "state", "hub": {"ca": "a:1"}}');
  const args = withConfig(SPEC, ["--config", path]);
  assert.deepEqual(args, [`--data-dir=${join(path, "..", "state")}`, "--ca=a:1"]);
});

Deno.test("config: lines of keys in TOML tables and nested JSON", () => {
  const toml = readConfigFile(file("a.toml", '# c\nca = "a:1"\n\n[hub]\n  names = "x"\n'));
  assert.equal(toml.lines.get("ca"), 2);
  assert.equal(toml.lines.get("hub.names"), 5);
  const json = readConfigFile(file("a.json", '{\n "ca": "a:1",\n "hub": {\n  "names": "x"\n }\n}'));
  assert.equal(json.lines.get("ca"), 2);
  assert.equal(json.lines.get("hub.names"), 4);
});

Deno.test("config: every problem is listed with its line; the file must be a table", () => {
  const path = file("bad.toml", 'ca = 3.5\nnope = 1\n[hub]\nquiet = "yes"\n');
  assert.throws(() => withConfig(SPEC, [`--config=${path}`]), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems.map((p) => p.line), [1, 2, 4]);
    return true;
  });
  assert.throws(() => readConfigFile(file("list.json", "[1]")), /must hold a table/);
  assert.throws(() => withConfig(SPEC, ["--config"]), /needs a file/);
});

Deno.test("config: a key in a flag's old spelling sets that flag", () => {
  const path = file("hub.toml", "udp-sessions = 5\n[hub]\nudp_sessions = 6\n");
  assert.deepEqual(withConfig(SPEC, [`--config=${path}`]), ["--udp-flows=5", "--udp-flows=6"]);
  Deno.removeSync(join(path, ".."), { recursive: true });
});
