import assert from "node:assert/strict";
import { ZtmError } from "@ztm/shared/errors";
import { Logger } from "@ztm/shared/log";
import { EXIT_SERVICE } from "@ztm/shared/peer_protocol";
import type { LocalService, PortMapping } from "./runtime.ts";
import { type Mesh, startMesh } from "./mesh.ts";
import { RogueHub } from "../tests/fixtures/rogue_hub.ts";
import { MEMBER_ENDPOINT_ID, memberConfig } from "../tests/fixtures/member_config.ts";

const WAIT_MS = 10_000;
const SSH: LocalService = {
  proto: "tcp",
  name: "ssh",
  host: "127.0.0.1",
  port: 22,
  users: ["bob"],
  strict: false,
};

/** A mesh of a member of `hub`'s mesh started with `state`; its log lines kept. */
async function meshOn(
  hub: RogueHub,
  state: Parameters<typeof startMesh>[1] = { services: [], ports: [] },
) {
  const user = await hub.user("alice");
  const config = memberConfig(hub.ca, user, [hub.address]);
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) });
  // startMesh builds a Mesh; the test reaches its waits beside the MeshRuntime contract.
  const mesh = await startMesh(config, state, log) as Mesh;
  return { mesh, lines };
}

/** Runs `body` with a started mesh, closing it after. */
async function withMesh(
  hub: RogueHub,
  state: Parameters<typeof startMesh>[1] | undefined,
  body: (m: { mesh: Mesh; lines: Record<string, unknown>[] }) => Promise<void>,
) {
  const m = await meshOn(hub, state);
  try {
    await body(m);
  } finally {
    await m.mesh.close();
  }
}

Deno.test("a started mesh says hello with its services and exit, and tells the hub each change", async () => {
  await using hub = await RogueHub.start();
  await withMesh(hub, {
    services: [SSH],
    ports: [],
    exit: [{ destinations: ["10.0.0.0/8"], users: ["carol"] }],
  }, async ({ mesh }) => {
    const control = await hub.nextControl();
    await mesh.waitConnected(WAIT_MS);
    const hello = control.lines[0];
    assert.equal(hello.type, "hello");
    assert.equal(hello.name, "laptop");
    assert.equal(hello.seed, "seed");
    assert.deepEqual(hello.services, [
      { proto: "tcp", name: "ssh", users: ["bob"] },
      { proto: "tcp", name: EXIT_SERVICE, users: ["carol"] },
    ]);
    // Host and port of a service never leave the endpoint.
    assert.ok(!JSON.stringify(control.lines).includes("127.0.0.1"));

    mesh.setServices([]);
    const sent = await control.waitFor(
      (m) => m.type === "services" && (m.services as unknown[]).length === 1,
      WAIT_MS,
    );
    assert.deepEqual(sent.services, [{ proto: "tcp", name: EXIT_SERVICE, users: ["carol"] }]);
    mesh.setExit!(null);
    await control.waitFor(
      (m) => m.type === "services" && (m.services as unknown[]).length === 0,
      WAIT_MS,
    );

    const status = mesh.status();
    assert.equal(status.name, "home");
    assert.deepEqual(status.endpoint, { id: MEMBER_ENDPOINT_ID, name: "laptop" });
    assert.equal(status.user, "alice");
    assert.equal(status.connected, true);
    assert.equal(status.hub, hub.address);
  });
});

Deno.test("listings ask the hub with the page and search given", async () => {
  await using hub = await RogueHub.start();
  const paths: string[] = [];
  hub.onRequest = (stream, headers) => {
    paths.push(String(headers[":path"]));
    stream.respond({ ":status": 200, "content-type": "application/json" });
    stream.end(JSON.stringify({ items: [], total: 0, offset: 5, limit: 10 }));
  };
  await withMesh(hub, undefined, async ({ mesh }) => {
    await mesh.waitConnected(WAIT_MS);
    assert.deepEqual(await mesh.endpoints({ offset: 5, limit: 10, q: "lap top" }), {
      items: [],
      total: 0,
      offset: 5,
      limit: 10,
    });
    await mesh.services({ offset: 0, limit: 100 });
    assert.deepEqual(paths, [
      "/api/endpoints?offset=5&limit=10&q=lap+top",
      "/api/services?offset=0&limit=100",
    ]);
  });
});

Deno.test("a tunnel request is refused when the hub has no data port, or the service is not offered to the caller", async () => {
  await using hub = await RogueHub.start();
  const open = (sid: string, name: string, user: string) =>
    JSON.stringify({
      type: "open",
      sid,
      service: { proto: "tcp", name },
      from: { endpoint: "ep-" + "5".repeat(32), user },
      ticket: "a".repeat(64),
    });
  await withMesh(hub, { services: [SSH], ports: [] }, async ({ mesh }) => {
    const control = await hub.nextControl();
    await mesh.waitConnected(WAIT_MS);
    control.write(open("s1", "web", "bob"));
    const unknown = await control.waitFor((m) => m.sid === "s1", WAIT_MS);
    assert.equal(unknown.type, "refuse");
    assert.equal(unknown.code, "unknown_service");
    control.write(open("s2", "ssh", "mallory"));
    const denied = await control.waitFor((m) => m.sid === "s2", WAIT_MS);
    assert.equal(denied.type, "refuse");
    assert.equal(denied.code, "access_denied");
    assert.equal(denied.status, 403);
  });

  hub.offerDataPort = false;
  await withMesh(hub, { services: [SSH], ports: [] }, async ({ mesh, lines }) => {
    const control = await hub.nextControl();
    await mesh.waitConnected(WAIT_MS);
    control.write(open("s3", "ssh", "bob"));
    const refused = await control.waitFor((m) => m.sid === "s3", WAIT_MS);
    assert.deepEqual(
      [refused.type, refused.status, refused.code],
      ["refuse", 503, "no_data_port"],
    );
    assert.ok(lines.some((l) => l.msg === "hub has no data port: tunnels are unavailable"));
  });
});

Deno.test("a management request before the endpoint is ready answers not_ready", async () => {
  await using hub = await RogueHub.start();
  await withMesh(hub, undefined, async ({ mesh }) => {
    const control = await hub.nextControl();
    await mesh.waitConnected(WAIT_MS);
    control.write(JSON.stringify({
      type: "manage",
      rid: "r1",
      request: {},
      from: { endpoint: "ep-x", user: "root" },
    }));
    const answer = await control.waitFor((m) => m.rid === "r1", WAIT_MS);
    assert.equal(answer.status, 503);
    assert.equal(JSON.parse(String(answer.body)).error.code, "not_ready");
  });
});

Deno.test("a stored mapping whose port is taken does not stop the mesh; an unknown one cannot be closed", async () => {
  await using hub = await RogueHub.start();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const mapping: PortMapping = {
    ip: "127.0.0.1",
    proto: "tcp",
    port: taken.addr.port,
    target: { service: "ssh" },
  };
  await withMesh(hub, { services: [], ports: [mapping] }, async ({ mesh, lines }) => {
    assert.ok(
      lines.some((l) =>
        l.msg === "port mapping not reopened" && l.level === "warn" && l.mesh === "home"
      ),
    );
    await mesh.waitConnected(WAIT_MS);
    await assert.rejects(mesh.closePort(mapping), (err: unknown) => {
      assert.ok(err instanceof ZtmError);
      assert.equal(err.code, "unknown_port");
      assert.equal(err.status, 404);
      return true;
    });
  });
});

Deno.test("a hub request without any hub connected is refused as hub_unreachable", async () => {
  await using hub = await RogueHub.start();
  const { mesh } = await meshOn(hub);
  try {
    // Before the first welcome nothing is connected.
    assert.throws(() => mesh.hubRequest!("GET", "/api/status"), (err: unknown) => {
      assert.ok(err instanceof ZtmError);
      assert.equal(err.code, "hub_unreachable");
      return true;
    });
  } finally {
    await mesh.close();
  }
});
