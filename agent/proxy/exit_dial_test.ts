import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import { dialExit } from "./exit_dial.ts";
import { ExitPolicy } from "./exit_policy.ts";

/** A listener on 127.0.0.1 that counts what reaches it. */
function countingListener() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { accepted: 0, port: listener.addr.port };
  (async () => {
    for await (const c of listener) {
      state.accepted++;
      c.close();
    }
  })().catch(() => {});
  return { state, [Symbol.dispose]: () => listener.close() };
}

const alice = { user: "alice", owner: "bob" };

async function refused(p: Promise<unknown>): Promise<ZtmError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ZtmError, String(err));
    return err;
  }
  throw new Error("not refused");
}

Deno.test("an exit refuses its own loopback, unlisted places and names resolving outside, before any packet", async () => {
  using l = countingListener();
  const port = l.state.port;
  const lan = new ExitPolicy([{
    destinations: ["10.2.0.0/16", "*.office.lan", "0.0.0.0/0"],
    users: ["*"],
  }]);
  const resolve = (host: string) =>
    Promise.resolve(
      host === "rebind.office.lan" ? ["127.0.0.1"] : host === "away.example" ? ["127.0.0.1"] : [],
    );
  // Loopback is not opened by 0.0.0.0/0, nor by a glob whose name resolves there.
  assert.equal(
    (await refused(dialExit(lan, alice, { host: "127.0.0.1", port }, { resolve }))).code,
    "exit_denied",
  );
  assert.equal(
    (await refused(dialExit(lan, alice, { host: "localhost", port }, {
      resolve: () => Promise.resolve(["127.0.0.1", "::1"]),
    }))).code,
    "exit_denied",
  );
  assert.equal(
    (await refused(dialExit(lan, alice, { host: "rebind.office.lan", port }, { resolve }))).code,
    "exit_denied",
  );
  const narrow = new ExitPolicy([{ destinations: ["10.2.0.0/16"], users: ["*"] }]);
  assert.equal(
    (await refused(dialExit(narrow, alice, { host: "away.example", port }, { resolve }))).code,
    "exit_denied",
  );
  // A user the list does not name.
  const bobOnly = new ExitPolicy([{ destinations: ["127.0.0.1/32"] }]);
  assert.equal(
    (await refused(dialExit(bobOnly, alice, { host: "127.0.0.1", port }, { resolve }))).code,
    "exit_denied",
  );
  assert.equal(l.state.accepted, 0, "nothing reached the exit's listener");
});

Deno.test("an allowed destination is dialled at the address that was checked", async () => {
  using l = countingListener();
  const port = l.state.port;
  const explicit = new ExitPolicy([{
    destinations: ["127.0.0.1/32"],
    ports: [String(port)],
    users: ["alice"],
  }]);
  let asked = 0;
  const resolve = () => {
    asked++;
    return Promise.resolve(["127.0.0.1"]);
  };
  const conn = await dialExit(explicit, alice, { host: "service.example", port }, { resolve });
  conn.close();
  assert.equal(asked, 1, "the name is resolved once");
  const until = Date.now() + 5_000;
  while (l.state.accepted < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(l.state.accepted, 1);
  // Another port of the same address is not listed.
  assert.equal(
    (await refused(dialExit(explicit, alice, { host: "127.0.0.1", port: port + 1 }))).code,
    "exit_denied",
  );
});

Deno.test("malformed destinations and dead ones are refused with their own codes", async () => {
  const any = new ExitPolicy([{ destinations: ["127.0.0.1/32"], users: ["*"] }]);
  for (
    const to of [{ host: "", port: 80 }, { host: "a", port: 0 }, {
      host: "a".repeat(256),
      port: 80,
    }, { host: "a", port: 1.5 }]
  ) {
    assert.equal((await refused(dialExit(any, alice, to))).code, "bad_exit_destination");
  }
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  const dead = await refused(dialExit(any, alice, { host: "127.0.0.1", port }));
  assert.equal(dead.status, 502);
  assert.equal(dead.code, "target_unreachable");
});
