import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import { ExitPolicy, parseIp, type Resolver } from "./exit_policy.ts";

const owner = { user: "bob", owner: "bob" };
const alice = { user: "alice", owner: "bob" };

/** A resolver from a table; counts lookups. */
function dns(table: Record<string, string[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const r = (host: string) => {
    asked.push(host);
    const got = table[host];
    return got ? Promise.resolve(got) : Promise.reject(new Error("NXDOMAIN"));
  };
  return Object.assign(r, { asked });
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ZtmError, String(err));
    assert.equal(err.status, 403);
    assert.equal(err.code, "exit_denied");
    return err.message;
  }
  throw new Error("not refused");
}

Deno.test("IP literals parse, IPv4-mapped IPv6 as IPv4", () => {
  assert.deepEqual(parseIp("10.2.0.3"), { v6: false, value: 0x0a020003n });
  assert.deepEqual(parseIp("::ffff:127.0.0.1"), { v6: false, value: 0x7f000001n });
  assert.deepEqual(parseIp("[::1]"), { v6: true, value: 1n });
  assert.deepEqual(parseIp("fe80::1"), { v6: true, value: (0xfe80n << 112n) | 1n });
  for (const bad of ["256.1.1.1", "1.2.3", "1::2::3", "office.lan", "", "1:2:3:4:5:6:7:8:9"]) {
    assert.equal(parseIp(bad), null, bad);
  }
});

Deno.test("the default exit list reaches nothing", async () => {
  const empty = new ExitPolicy([]);
  assert.match(await refusal(empty.check(owner, "10.0.0.1", 80, dns({}))), /lists no destination/);
});

Deno.test("an exit allows listed CIDRs and ports, to the users it names", async () => {
  const p = new ExitPolicy([{
    destinations: ["10.2.0.0/16"],
    ports: ["80", "8000-8100"],
    users: ["alice"],
  }]);
  assert.equal(await p.check(alice, "10.2.0.3", 80, dns({})), "10.2.0.3");
  assert.equal(await p.check(alice, "10.2.255.255", 8080, dns({})), "10.2.255.255");
  assert.match(await refusal(p.check(alice, "10.3.0.1", 80, dns({}))), /destination not listed/);
  assert.match(await refusal(p.check(alice, "10.2.0.3", 22, dns({}))), /port not listed/);
  assert.match(
    await refusal(p.check({ user: "carol", owner: "bob" }, "10.2.0.3", 80, dns({}))),
    /"carol" may not use/,
  );
  // The owner and root are always admitted to the list (not past it).
  assert.equal(await p.check({ user: "root", owner: "bob" }, "10.2.0.3", 80, dns({})), "10.2.0.3");
});

Deno.test("names: a glob admits what they resolve to, a name resolving outside the list is refused", async () => {
  const p = new ExitPolicy([
    { destinations: ["*.office.lan"], users: ["*"] },
    { destinations: ["10.2.0.0/16"], users: ["*"] },
  ]);
  const table = dns({
    "intranet.office.lan": ["192.0.2.10"],
    "wiki.example": ["10.2.0.7"],
    "evil.example": ["198.51.100.1"],
    "sneaky.office.lan": ["127.0.0.1"],
    "linky.office.lan": ["169.254.169.254"],
  });
  // By glob: the resolved address is dialled, whatever it is (if not special).
  assert.equal(await p.check(alice, "Intranet.Office.LAN.", 443, table), "192.0.2.10");
  // By address: the name matches no glob but resolves into a listed CIDR.
  assert.equal(await p.check(alice, "wiki.example", 80, table), "10.2.0.7");
  assert.match(
    await refusal(p.check(alice, "evil.example", 80, table)),
    /resolves to 198\.51\.100\.1, outside the list/,
  );
  // A glob does not open the exit's own loopback or link-local addresses (DNS rebinding).
  assert.match(
    await refusal(p.check(alice, "sneaky.office.lan", 80, table)),
    /127\.0\.0\.1 is this exit's own/,
  );
  assert.match(await refusal(p.check(alice, "linky.office.lan", 80, table)), /169\.254\.169\.254/);
  assert.match(await refusal(p.check(alice, "nxdomain.office.lan", 80, table)), /does not resolve/);
  // "*.office.lan" is not "office.lan".
  assert.match(
    await refusal(p.check(alice, "office.lan", 80, dns({ "office.lan": ["192.0.2.1"] }))),
    /outside the list/,
  );
});

Deno.test("loopback and link-local are refused unless a rule lists inside them", async () => {
  const wide = new ExitPolicy([{ destinations: ["0.0.0.0/0", "::/0", "*"], users: ["*"] }]);
  for (
    const a of [
      "127.0.0.1",
      "127.9.9.9",
      "::1",
      "[::1]",
      "::ffff:127.0.0.1",
      "169.254.1.1",
      "fe80::1",
      "0.0.0.0",
      "::",
      "224.0.0.1",
    ]
  ) {
    await refusal(wide.check(alice, a, 80, dns({})));
  }
  assert.match(
    await refusal(wide.check(alice, "localhost", 80, dns({ localhost: ["127.0.0.1", "::1"] }))),
    /own/,
  );
  assert.equal(await wide.check(alice, "8.8.8.8", 53, dns({})), "8.8.8.8");
  const explicit = new ExitPolicy([{ destinations: ["127.0.0.1/32", "fe80::/64"], users: ["*"] }]);
  assert.equal(await explicit.check(alice, "127.0.0.1", 80, dns({})), "127.0.0.1");
  assert.equal(await explicit.check(alice, "fe80::1", 80, dns({})), "fe80::1");
  await refusal(explicit.check(alice, "127.0.0.2", 80, dns({})));
});

Deno.test("bad exit lists are refused naming the item", () => {
  const bad: [unknown, RegExp][] = [
    [[{ destinations: [] }], /destinations must list/],
    [[{ destinations: ["10.0.0.0/33"] }], /"10\.0\.0\.0\/33" is neither/],
    [[{ destinations: ["a..b"] }], /neither a CIDR nor a domain glob/],
    [[{ destinations: ["1.2.3"] }], /neither/],
    [[{ destinations: ["*.x"], ports: ["0"] }], /bad port "0"/],
    [[{ destinations: ["*.x"], ports: ["90-80"] }], /bad port/],
    ["nope", /array/],
  ];
  for (const [rules, message] of bad) {
    assert.throws(
      () => new ExitPolicy(rules as never),
      (e: ZtmError) => e.code === "bad_exit" && message.test(e.message),
    );
  }
});
