import assert from "node:assert/strict";
import { join } from "node:path";
import { createCrl, type Serial } from "@ztm/shared/certs";
import { verifyCrl } from "@ztm/shared/crl";
import { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import { HubLink, type HubLinkOptions, REFUSED_BY_HUB, userOf } from "./hub_link.ts";
import { RogueHub } from "../tests/fixtures/rogue_hub.ts";
import { MEMBER_ENDPOINT_ID, memberConfig, memberHello } from "../tests/fixtures/member_config.ts";
import { eventually } from "../tests/fixtures/harness.ts";

const WAIT_MS = 10_000;

/** A link of a member (of `hub`'s mesh unless given) to `hub`, its log lines and what it was told. */
async function linkTo(
  hub: RogueHub,
  opts: Partial<HubLinkOptions> = {},
  member?: { certificate: string; privateKey: string },
) {
  const user = member ?? await hub.user("alice");
  const lines: Record<string, unknown>[] = [];
  const welcomes: { hostname: string; dataPort: number | undefined }[] = [];
  const lost: string[] = [];
  const link = new HubLink({
    config: memberConfig(hub.ca, user, [hub.address]),
    log: new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) }),
    hello: memberHello,
    onOpen: () => {},
    onManage: () => Promise.resolve({ status: 200, body: '{"ok":true}' }),
    onWelcome: (w) => welcomes.push(w),
    onLost: (why) => lost.push(why),
    ...opts,
  });
  return { link, lines, welcomes, lost };
}

Deno.test("a link to its mesh's hub says hello, is welcomed, and tells where the hub's data port is", async () => {
  await using hub = await RogueHub.start();
  const { link, welcomes } = await linkTo(hub);
  try {
    assert.equal(link.state().connected, false);
    link.start();
    const control = await hub.nextControl();
    await link.waitConnected(WAIT_MS);
    assert.equal(control.endpointId, MEMBER_ENDPOINT_ID);
    assert.deepEqual(control.lines[0], memberHello());
    assert.deepEqual(welcomes, [{ hostname: "127.0.0.1", dataPort: hub.dataPort }]);
    const state = link.state();
    assert.equal(state.connected, true);
    assert.equal(state.hub, hub.address);
    assert.equal(state.lastError, null);
    assert.equal(state.crlAlarm, null);
    assert.equal(link.sessionAlive(), true);
    const cert = link.hubCertificate();
    assert.ok(cert && cert.serial && cert.notAfter > Date.now() && cert.raw.length > 0);
    assert.match(link.hubKey() ?? "", /^[0-9a-f]+$/);

    // Control messages go out on the control stream.
    assert.equal(link.send({ type: "services", services: [] }), true);
    await control.waitFor((m) => m.type === "services", WAIT_MS);
  } finally {
    await link.close();
  }
  assert.equal(link.state().connected, false);
  assert.equal(link.send({ type: "services", services: [] }), false);
});

Deno.test("requests carry the hub's answer; its errors become ZtmErrors and a body that is not JSON is refused", async () => {
  await using hub = await RogueHub.start();
  const { link } = await linkTo(hub);
  const seen: { method: string; path: string; body: string }[] = [];
  hub.onRequest = (stream, headers, body) => {
    const path = String(headers[":path"]);
    seen.push({ method: String(headers[":method"]), path, body });
    if (path === "/api/ok") {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end('{"items":[1,2]}');
    } else if (path === "/api/html") {
      stream.respond({ ":status": 200 });
      stream.end("<html>");
    } else {
      stream.respond({ ":status": 409, "content-type": "application/json" });
      stream.end(JSON.stringify({ error: { code: "busy", message: "Try later" } }));
    }
  };
  try {
    // Before the session: refused at once, naming why.
    await assert.rejects(
      link.request("GET", "/api/ok"),
      (err: unknown) => err instanceof ZtmError && err.code === "hub_unreachable",
    );
    link.start();
    await link.waitConnected(WAIT_MS);
    assert.deepEqual(await link.request("GET", "/api/ok"), { items: [1, 2] });
    assert.deepEqual(await link.requestRaw("POST", "/api/x", '{"a":1}'), {
      status: 409,
      body: JSON.stringify({ error: { code: "busy", message: "Try later" } }),
    });
    await assert.rejects(link.request("GET", "/api/other"), (err: unknown) => {
      assert.ok(err instanceof ZtmError);
      assert.equal(err.status, 409);
      assert.equal(err.code, "busy");
      assert.equal(err.message, "Try later");
      return true;
    });
    await assert.rejects(link.request("GET", "/api/html"), (err: unknown) => {
      assert.ok(err instanceof ZtmError);
      assert.equal(err.code, "bad_hub_response");
      assert.match(err.message, /answered 200 with a body that is not JSON/);
      return true;
    });
    assert.deepEqual(seen[1], { method: "POST", path: "/api/x", body: '{"a":1}' });
  } finally {
    await link.close();
  }
});

Deno.test("a management request is answered on the control stream; a handler that fails answers its error", async () => {
  await using hub = await RogueHub.start();
  let fail = false;
  const { link } = await linkTo(hub, {
    onManage: () => {
      if (fail) throw new ZtmError(403, "not_allowed", "No");
      return Promise.resolve({ status: 200, body: "signed answer" });
    },
  });
  try {
    link.start();
    const control = await hub.nextControl();
    await link.waitConnected(WAIT_MS);
    const manage = (rid: string) =>
      control.write(JSON.stringify({
        type: "manage",
        rid,
        request: {},
        from: { endpoint: "ep-other", user: "bob" },
      }));
    manage("r1");
    assert.deepEqual(await control.waitFor((m) => m.rid === "r1", WAIT_MS), {
      type: "managed",
      rid: "r1",
      status: 200,
      body: "signed answer",
    });
    fail = true;
    manage("r2");
    const refused = await control.waitFor((m) => m.rid === "r2", WAIT_MS);
    assert.equal(refused.status, 403);
    assert.equal(JSON.parse(String(refused.body)).error.code, "not_allowed");
  } finally {
    await link.close();
  }
});

Deno.test("hub lines that are malformed or out of order are counted and change nothing", async () => {
  await using hub = await RogueHub.start();
  const { link, lines, welcomes } = await linkTo(hub);
  try {
    link.start();
    const control = await hub.nextControl();
    await link.waitConnected(WAIT_MS);
    control.write(JSON.stringify({ type: "welcome", endpoint: {}, hub: { version: "again" } }));
    control.write(JSON.stringify({ type: "open", sid: "s", ticket: "not a ticket" }));
    control.write("{not json");
    await eventually(
      () => lines.filter((l) => l.msg === "bad message from hub").length >= 2,
      WAIT_MS,
      "refusals",
    );
    const codes = lines.filter((l) => l.msg === "bad message from hub").map((l) => l.code);
    assert.ok(codes.includes("out_of_order"), String(codes));
    assert.ok(codes.includes("bad_message"), String(codes));
    assert.equal(welcomes.length, 1);
    assert.equal(link.state().connected, true);
  } finally {
    await link.close();
  }
});

Deno.test("a hub whose certificate is on the mesh's CRL is refused; one revoked while connected is left", async () => {
  await using hub = await RogueHub.start();
  const dir = Deno.makeTempDirSync();
  try {
    // The hub's serial, from a first link.
    const first = await linkTo(hub);
    first.link.start();
    await first.link.waitConnected(WAIT_MS);
    const serial = first.link.hubCertificate()!.serial;
    const crl = await verifyCrl(
      await createCrl(hub.ca, [{ serial: serial as Serial, revokedAt: new Date() }], { number: 2 }),
      hub.ca.pem,
    );
    // Another link verified a CRL with the hub on it.
    first.link.offerCrl(crl);
    await eventually(() => first.lost.length === 1, WAIT_MS, "the link lost");
    assert.equal(first.link.crlNumber(), 2);
    assert.ok(first.link.revoked().has(serial));
    await first.link.close();

    // A restarted agent remembers the CRL and does not admit the hub again.
    const crlFile = join(dir, "home.crl");
    Deno.writeTextFileSync(crlFile, crl.pem);
    // (The rogue hub answers only a first CRL request itself: it has nothing newer than 2.)
    hub.onRequest = (stream) => {
      stream.respond({ ":status": 204 });
      stream.end();
    };
    const second = await linkTo(hub, { crlFile });
    second.link.start();
    try {
      const failures = await second.link.firstSession(WAIT_MS);
      assert.deepEqual(failures, [{ hub: hub.address, why: "hub certificate is revoked" }]);
      assert.equal(second.link.state().lastError, "hub certificate is revoked");
    } finally {
      await second.link.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a hub another link already holds is stood down with the reason the link set gives", async () => {
  await using hub = await RogueHub.start();
  const keys: string[] = [];
  const { link } = await linkTo(hub, {
    claimHub: (key) => (keys.push(key), "same hub as hub-a:8888"),
  });
  try {
    link.start();
    assert.deepEqual(await link.firstSession(WAIT_MS), [{
      hub: hub.address,
      why: "same hub as hub-a:8888",
    }]);
    assert.equal(keys[0], link.hubKey());
    await assert.rejects(link.waitConnected(1), /Not connected to the hub: same hub as hub-a:8888/);
  } finally {
    await link.close();
  }
});

Deno.test("a member of another mesh is refused by the hub, and the dial says so", async () => {
  await using hub = await RogueHub.start();
  await using other = await RogueHub.start();
  const { link } = await linkTo(hub, {}, await other.user("mallory"));
  try {
    link.start();
    assert.deepEqual(await link.firstSession(WAIT_MS), [{ hub: hub.address, why: REFUSED_BY_HUB }]);
  } finally {
    await link.close();
  }
});

Deno.test("the user of a certificate is its common name", async () => {
  await using hub = await RogueHub.start();
  assert.equal(userOf((await hub.user("alice")).certificate), "alice");
});
