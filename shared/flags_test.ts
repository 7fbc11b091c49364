/**
 * Flag parsing: addresses, loopback names, `~`, and a command's validated flags.
 */
import assert from "node:assert/strict";
import {
  type CommandSpec,
  expandHome,
  formatHostPort,
  isLoopbackHost,
  parseFlags,
  parseHostPort,
  usage,
  UsageError,
} from "./flags.ts";

const SPEC: CommandSpec = {
  name: "ztm test",
  summary: "A command for tests.",
  flags: [
    { name: "listen", kind: "address", default: "127.0.0.1:9999", help: "where to listen" },
    { name: "database", kind: "path", default: "~/test.db", help: "database file" },
    { name: "token-file", kind: "path", optional: true, help: "token file" },
    { name: "workers", kind: "integer", default: "4", help: "how many workers" },
    { name: "verbose", kind: "boolean", default: "false", help: "say more" },
    { name: "ca", kind: "address", help: "the CA" },
  ],
  examples: ["ztm test --ca=127.0.0.1:9999"],
};

Deno.test("parseHostPort reads host:port, [v6]:port and :port", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9999"), { hostname: "127.0.0.1", port: 9999 });
  assert.deepEqual(parseHostPort("example.com:0"), { hostname: "example.com", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:80"), { hostname: "::1", port: 80 });
  assert.deepEqual(parseHostPort(":8888"), { hostname: "0.0.0.0", port: 8888 });
  assert.deepEqual(parseHostPort("hub.example", 8888), { hostname: "hub.example", port: 8888 });
  assert.deepEqual(parseHostPort("[::1]", 80), { hostname: "::1", port: 80 });
  assert.deepEqual(parseHostPort("h:65535"), { hostname: "h", port: 65535 });
});

Deno.test("parseHostPort refuses bad ports, bad hosts and bare IPv6, naming the value", () => {
  for (
    const bad of [
      "nonsense:99999",
      "h:65536",
      "h:-1",
      "h:1.5",
      "h:0x10",
      "h:80a",
      "::1:80",
      "a b:1",
      "h/x:1",
      "hub.example",
      "h:",
    ]
  ) {
    assert.throws(
      () => parseHostPort(bad),
      (err: Error) => err instanceof UsageError && err.message.includes(`"${bad}"`),
      bad,
    );
  }
});

Deno.test("formatHostPort brackets IPv6 and round-trips through parseHostPort", () => {
  assert.equal(formatHostPort({ hostname: "::1", port: 80 }), "[::1]:80");
  assert.equal(formatHostPort({ hostname: "127.0.0.1", port: 0 }), "127.0.0.1:0");
  for (const text of ["[::1]:80", "10.0.0.1:443", "hub.example:8888"]) {
    assert.equal(formatHostPort(parseHostPort(text)), text);
  }
});

Deno.test("isLoopbackHost accepts loopback names and addresses only", () => {
  for (
    const h of ["localhost", "LOCALHOST", "a.localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"]
  ) {
    assert.ok(isLoopbackHost(h), h);
  }
  for (
    const h of [
      "evil.example",
      "localhost.evil.example",
      "127.0.0.1.evil.example",
      "0.0.0.0",
      "10.0.0.1",
      "::",
      "",
      "128.0.0.1",
    ]
  ) {
    assert.ok(!isLoopbackHost(h), h);
  }
});

Deno.test("expandHome expands a leading ~ only", () => {
  const home = Deno.env.get("HOME")!;
  assert.equal(expandHome("~"), home);
  assert.equal(expandHome("~/ztm-ca.db"), `${home}/ztm-ca.db`);
  assert.equal(expandHome("~other/x"), "~other/x");
  assert.equal(expandHome("/a/~/b"), "/a/~/b");
  assert.equal(expandHome("rel"), "rel");
});

Deno.test("parseFlags fills defaults, expands paths and reads every kind", () => {
  const flags = parseFlags(SPEC, ["--ca=ca.example:9999"]);
  assert.ok(typeof flags === "object");
  assert.deepEqual(flags.address("listen"), { hostname: "127.0.0.1", port: 9999 });
  assert.equal(flags.path("database"), `${Deno.env.get("HOME")}/test.db`);
  assert.equal(flags.path("token-file"), undefined);
  assert.equal(flags.integer("workers"), 4);
  assert.equal(flags.boolean("verbose"), false);
  assert.deepEqual(flags.address("ca"), { hostname: "ca.example", port: 9999 });

  const set = parseFlags(SPEC, [
    "--ca=[::1]:1",
    "--listen",
    "0.0.0.0:0",
    "--database=/x/y.db",
    "--token-file=/t",
    "--workers=12",
    "--verbose",
  ]);
  assert.ok(typeof set === "object");
  assert.deepEqual(set.address("listen"), { hostname: "0.0.0.0", port: 0 });
  assert.equal(set.path("database"), "/x/y.db");
  assert.equal(set.string("token-file"), "/t");
  assert.equal(set.integer("workers"), 12);
  assert.equal(set.boolean("verbose"), true);
  assert.throws(() => set.string("undeclared"), /not declared/);
});

Deno.test("parseFlags answers help and version before checking other flags", () => {
  assert.equal(parseFlags(SPEC, ["--help"]), "help");
  assert.equal(parseFlags(SPEC, ["--version"]), "version");
  assert.equal(parseFlags(SPEC, ["--listen=bad:99999", "--help"]), "help");
});

Deno.test("parseFlags throws UsageError for unknown, missing, malformed and positional arguments", () => {
  const cases: [string[], RegExp][] = [
    [["--ca=a:1", "--bogus"], /Unknown option '--bogus'$/],
    [[], /--ca is required/],
    [["--ca=a:1", "--listen=nonsense:99999"], /^--listen: Bad port in address "nonsense:99999"/],
    [["--ca=a:1", "--workers=many"], /--workers must be a whole number, got "many"/],
    [["--ca=a:1", "--workers=-2"], /--workers must be a whole number/],
    [["--ca=a:1", "extra"], /extra/],
    [["--ca"], /--ca/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(SPEC, args), (err: Error) => {
      assert.ok(err instanceof UsageError, `${args}: ${err}`);
      assert.match(err.message, message);
      assert.ok(!err.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("usage lists every flag with its kind, help and default, plus help, version and examples", () => {
  const text = usage(SPEC);
  const lines = text.split("\n");
  assert.equal(lines[0], "Usage: ztm test [flags]");
  assert.ok(lines.includes("A command for tests."));
  assert.match(text, /--listen=ADDRESS\s+where to listen \(default: 127\.0\.0\.1:9999\)/);
  assert.match(text, /--database=PATH\s+database file \(default: ~\/test\.db\)/);
  assert.match(text, /--workers=INTEGER\s+how many workers \(default: 4\)/);
  assert.match(text, /--verbose\s+say more \(default: false\)$/m);
  assert.match(text, /--token-file=PATH\s+token file$/m);
  assert.match(text, /--help\s+show this help and exit/);
  assert.match(text, /--version\s+print the version and exit/);
  assert.match(text, /--config=PATH\s+read flags from a TOML or JSON file \(flags here win\)/);
  assert.match(text, /Examples:\n {2}ztm test --ca=127\.0\.0\.1:9999/);
  // Help texts line up in one column.
  const columns = lines.filter((l) => l.startsWith("  --")).map((l) =>
    /^ {2}\S+\s+/.exec(l)![0].length
  );
  assert.equal(columns.length, 9);
  assert.equal(new Set(columns).size, 1);
});

const WITH_ARGS: CommandSpec = {
  name: "ztm thing",
  summary: "A command with positional arguments.",
  args: [
    { name: "KIND", help: "what to do it to" },
    { name: "NAME", help: "which one", optional: true },
  ],
  flags: [{ name: "mesh", kind: "string", optional: true, help: "the mesh" }],
};

Deno.test("parseFlags reads declared positional arguments in any order with flags", () => {
  const flags = parseFlags(WITH_ARGS, ["meshes", "--mesh=work", "alpha"]);
  assert.ok(typeof flags === "object");
  assert.equal(flags.arg("KIND"), "meshes");
  assert.equal(flags.arg("NAME"), "alpha");
  assert.equal(flags.string("mesh"), "work");
  const short = parseFlags(WITH_ARGS, ["ports"]);
  assert.ok(typeof short === "object");
  assert.equal(short.arg("NAME"), undefined);
  assert.equal(short.string("mesh"), undefined);
});

Deno.test("parseFlags refuses a missing or an extra positional argument", () => {
  assert.throws(() => parseFlags(WITH_ARGS, []), /^Error: KIND is required$/);
  assert.throws(() => parseFlags(WITH_ARGS, ["a", "b", "c"]), /Unexpected argument "c"/);
});

Deno.test("usage shows positional arguments in the usage line and lists them", () => {
  const text = usage(WITH_ARGS);
  assert.equal(text.split("\n")[0], "Usage: ztm thing KIND [NAME] [flags]");
  assert.match(text, /Arguments:\n {2}KIND {2}what to do it to\n {2}NAME {2}which one\n/);
});

Deno.test("an old spelling of a flag is read as the flag, on the command line and in --help", () => {
  const spec: CommandSpec = {
    name: "ztm test",
    summary: "A command for tests.",
    flags: [
      { name: "flows", kind: "integer", default: "4", oldSpellings: ["sessions"], help: "cap" },
    ],
  };
  const read = (args: string[]) => {
    const flags = parseFlags(spec, args);
    assert.ok(typeof flags === "object");
    return flags.integer("flows");
  };
  assert.equal(read([]), 4);
  assert.equal(read(["--sessions=7"]), 7);
  assert.equal(read(["--sessions", "8"]), 8);
  // Both spellings name one flag: the last one given wins, as for a repeated flag.
  assert.equal(read(["--flows=5", "--sessions=6"]), 6);
  assert.equal(read(["--sessions=6", "--flows=5"]), 5);
  assert.throws(() => parseFlags(spec, ["--sessions=x"]), /--flows must be a whole number/);
  assert.match(usage(spec), /^ {2}--sessions=INTEGER +old spelling of --flows, still accepted$/m);
});
