/**
 * Remote management with real processes over loopback (issue "Manage any
 * endpoint from any endpoint"): root manages other users'
 * endpoints through its own agent's API and the changes carry data; a user
 * manages only their own endpoint; an endpoint's local policy limits what
 * remote callers may do; every change and refusal lands in the endpoint's
 * audit log, which survives a restart; and the local API wants its token or
 * a one-time dashboard login.
 *
 * Forged, altered, replayed and revoked signed requests from a hub-side
 * position are in `remote_forgery_test.ts`.
 */
import assert from "node:assert/strict";
import { api, type ApiBody, eventually, Harness, type Proc } from "../fixtures/harness.ts";
import {
  type AuditEntry,
  auditLog,
  endpointPath,
  MESH,
  type MeshAgent,
  restartJoinedAgent,
  startMeshOf,
  withoutState,
} from "../fixtures/mesh_fixture.ts";
import {
  echoRoundTrip,
  freePort,
  openConnection,
  startEchoServer,
} from "../fixtures/net_helpers.ts";

/** The error code of an API answer `{"error":{"code","message"}}`. */
function codeOf(res: { body: ApiBody }): string | undefined {
  return res.body?.error?.code;
}

/** Asserts an API answer is `status` with error `code`; returns its message. */
function assertRefused(
  res: { status: number; body: ApiBody },
  status: number,
  code: string,
  what: string,
): string {
  assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(codeOf(res), code, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.error.message, "string");
  return res.body.error.message;
}

/** The agent's own services in {@link MESH}, read locally. */
async function localServices(agent: MeshAgent): Promise<ApiBody> {
  const res = await api(agent.url, "GET", endpointPath(agent.endpointId, "services"));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.map(withoutState);
}

/** The agent's own port mappings in {@link MESH}, read locally. */
async function localPorts(agent: MeshAgent): Promise<ApiBody> {
  const res = await api(agent.url, "GET", endpointPath(agent.endpointId, "ports"));
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.map(withoutState);
}

/** The newest audit entry matching `entry`'s fields, or a failure listing the log. */
function findAudit(log: AuditEntry[], entry: Partial<AuditEntry>, what: string): AuditEntry {
  const hit = log.find((e) =>
    Object.entries(entry).every(([k, v]) => e[k as keyof AuditEntry] === v)
  );
  assert.ok(hit, `${what}: no audit entry like ${JSON.stringify(entry)} in ${JSON.stringify(log)}`);
  return hit;
}

Deno.test("root creates a service on bob's endpoint and a port mapping on alice's through its own agent, and data flows", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;

  const service = { host: "127.0.0.1", port: echo.port, users: ["alice"], strict: false };
  const created = await api(
    root.url,
    "POST",
    endpointPath(bob.endpointName, "services/tcp/echo"),
    service,
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body, { proto: "tcp", name: "echo", ...service });

  const port = await freePort();
  const mapped = await api(
    root.url,
    "POST",
    endpointPath(alice.endpointName, `ports/127.0.0.1/tcp/${port}`),
    { target: { service: "echo" } },
  );
  assert.equal(mapped.status, 201, JSON.stringify(mapped.body));
  // The mapping's pool is fixed to the only user offering tcp/echo: bob.
  const mapping = {
    ip: "127.0.0.1",
    proto: "tcp",
    port,
    target: { service: "echo", user: "bob" },
  };
  assert.deepEqual(withoutState(mapped.body), mapping);

  // Bytes go through alice's new listener, the hub and bob's new service to the echo server.
  await eventually(
    () => echoRoundTrip(port).then(() => true),
    15_000,
    "data through the mapping root made on alice's endpoint",
  );
  assert.ok(echo.accepted >= 1);

  // Each endpoint lists the change as its own.
  assert.deepEqual(await localServices(bob), [{ proto: "tcp", name: "echo", ...service }]);
  assert.deepEqual(await localPorts(alice), [mapping]);
  assert.deepEqual(await localPorts(bob), []);
  assert.deepEqual(await localServices(alice), []);

  // And each one's audit log says root did it from root's endpoint.
  findAudit(await auditLog(bob), {
    user: "root",
    via: root.endpointId,
    method: "POST",
    path: "services/tcp/echo",
    status: 201,
    outcome: "ok",
  }, "bob's log");
  findAudit(await auditLog(alice), {
    user: "root",
    via: root.endpointId,
    method: "POST",
    path: `ports/127.0.0.1/tcp/${port}`,
    status: 201,
    outcome: "ok",
  }, "alice's log");

  // Root reads both endpoints remotely, by id as well as by name.
  const bobServices = await api(root.url, "GET", endpointPath(bob.endpointId, "services"));
  assert.equal(bobServices.status, 200, JSON.stringify(bobServices.body));
  assert.deepEqual(bobServices.body.map(withoutState), [{
    proto: "tcp",
    name: "echo",
    ...service,
  }]);
  const alicePorts = await api(root.url, "GET", endpointPath(alice.endpointName, "ports"));
  assert.equal(alicePorts.status, 200, JSON.stringify(alicePorts.body));
  assert.deepEqual(alicePorts.body.map(withoutState), [mapping]);
  const bobLog = await api(root.url, "GET", endpointPath(bob.endpointName, "log"));
  assert.equal(bobLog.status, 200, JSON.stringify(bobLog.body));
  findAudit(
    bobLog.body.items,
    { user: "root", path: "services/tcp/echo" },
    "bob's log read by root",
  );
});

Deno.test("a user manages their own endpoint but not another user's, and root reads both", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob", "root"]);
  const { alice, bob, root } = m.agents;
  const aliceSvc = { host: "127.0.0.1", port: 7001, users: [], strict: false };
  const bobSvc = { host: "127.0.0.1", port: 7002, users: [], strict: false };

  // Positive controls: each user manages their own endpoint through their own agent.
  const a = await api(
    alice.url,
    "POST",
    endpointPath(alice.endpointName, "services/tcp/a"),
    aliceSvc,
  );
  assert.equal(a.status, 201, JSON.stringify(a.body));
  const b = await api(bob.url, "POST", endpointPath(bob.endpointName, "services/tcp/b"), bobSvc);
  assert.equal(b.status, 201, JSON.stringify(b.body));
  const aliceBefore = await localServices(alice);
  const bobBefore = await localServices(bob);
  assert.deepEqual(bobBefore, [{ proto: "tcp", name: "b", ...bobSvc }]);

  // alice may not change bob's endpoint, by name or by id; bob's services stay as they were.
  for (const ep of [bob.endpointName, bob.endpointId]) {
    const res = await api(alice.url, "POST", endpointPath(ep, "services/tcp/evil"), {
      host: "127.0.0.1",
      port: 22,
    });
    const message = assertRefused(res, 403, "not_allowed", `alice creating a service on ${ep}`);
    assert.match(message, /"alice"/);
  }
  const del = await api(alice.url, "DELETE", endpointPath(bob.endpointName, "services/tcp/b"));
  assertRefused(del, 403, "not_allowed", "alice deleting bob's service");
  const port = await api(
    alice.url,
    "POST",
    endpointPath(bob.endpointName, `ports/127.0.0.1/tcp/${await freePort()}`),
    { target: { service: "a" } },
  );
  assertRefused(port, 403, "not_allowed", "alice mapping a port on bob's endpoint");
  assert.deepEqual(await localServices(bob), bobBefore);
  assert.deepEqual(await localPorts(bob), []);

  // bob may not change alice's endpoint.
  const res = await api(bob.url, "POST", endpointPath(alice.endpointName, "services/tcp/evil"), {
    host: "127.0.0.1",
    port: 22,
  });
  assert.match(assertRefused(res, 403, "not_allowed", "bob creating on alice's"), /"bob"/);
  assert.deepEqual(await localServices(alice), aliceBefore);

  // Reading another user's endpoint is refused too.
  for (const [who, other] of [[alice, bob], [bob, alice]]) {
    for (const what of ["services", "ports", "log"]) {
      const read = await api(who.url, "GET", endpointPath(other.endpointName, what));
      assertRefused(
        read,
        403,
        "not_allowed",
        `${who.files.user} reading ${other.endpointName}'s ${what}`,
      );
    }
  }

  // Root reads both.
  const rootA = await api(root.url, "GET", endpointPath(alice.endpointName, "services"));
  assert.equal(rootA.status, 200, JSON.stringify(rootA.body));
  assert.deepEqual(rootA.body.map(withoutState), aliceBefore);
  const rootB = await api(root.url, "GET", endpointPath(bob.endpointName, "services"));
  assert.equal(rootB.status, 200, JSON.stringify(rootB.body));
  assert.deepEqual(rootB.body.map(withoutState), bobBefore);
  const rootBPorts = await api(root.url, "GET", endpointPath(bob.endpointName, "ports"));
  assert.equal(rootBPorts.status, 200, JSON.stringify(rootBPorts.body));
  assert.deepEqual(rootBPorts.body, []);

  // bob's log records alice's refused attempts, signed by her and sent from her endpoint.
  const log = await auditLog(bob);
  findAudit(log, {
    user: "alice",
    via: alice.endpointId,
    method: "POST",
    path: "services/tcp/evil",
    status: 403,
  }, "bob's log");
  findAudit(log, { user: "alice", method: "GET", path: "services", status: 403 }, "bob's log");
  assert.ok(!log.some((e) => e.user === "alice" && e.status < 300), JSON.stringify(log));
});

Deno.test("an endpoint's local policy limits remote changes and can switch remote management off", async () => {
  await using h = new Harness();
  await using echo = await startEchoServer();
  const m = await startMeshOf(h, ["bob", "root"]);
  const { bob, root } = m.agents;
  const policyPath = `/api/meshes/${MESH}/policy`;
  const remote = (method: string, rest: string, body?: unknown) =>
    api(root.url, method, endpointPath(bob.endpointName, rest), body);

  // Listen addresses: loopback by default, not every interface.
  const policy = await api(bob.url, "GET", policyPath);
  assert.equal(policy.status, 200, JSON.stringify(policy.body));
  assert.equal(policy.body.remoteManagement, true);
  const wide = await freePort();
  const anyAddr = await remote("POST", `ports/0.0.0.0/tcp/${wide}`, {
    target: { service: "echo" },
  });
  assertRefused(anyAddr, 403, "listen_not_allowed", "root listening on 0.0.0.0");
  await assert.rejects(openConnection(wide, 2_000), "nothing listens on the refused port");
  const narrow = await freePort();
  const loopback = await remote("POST", `ports/127.0.0.1/tcp/${narrow}`, {
    target: { service: "echo" },
  });
  assert.equal(loopback.status, 201, JSON.stringify(loopback.body));
  (await openConnection(narrow)).close();
  const loopbackMapping = {
    ip: "127.0.0.1",
    proto: "tcp",
    port: narrow,
    target: { service: "echo" },
  };
  assert.deepEqual(await localPorts(bob), [loopbackMapping]);

  // Targets: only loopback services for remote callers.
  const targets = await api(bob.url, "PUT", policyPath, { targets: ["127.0.0.1:*"] });
  assert.equal(targets.status, 200, JSON.stringify(targets.body));
  assert.deepEqual(targets.body.targets, ["127.0.0.1:*"]);
  assert.equal(targets.body.remoteManagement, true);
  const ssh = await remote("POST", "services/tcp/ssh", { host: "10.0.0.1", port: 22 });
  assertRefused(ssh, 403, "target_not_allowed", "root pointing a service at 10.0.0.1:22");
  const echoSvc = { host: "127.0.0.1", port: echo.port, users: [], strict: false };
  const ok = await remote("POST", "services/tcp/echo", echoSvc);
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.deepEqual(await localServices(bob), [{ proto: "tcp", name: "echo", ...echoSvc }]);

  // Remote management off: every remote change and read is refused, local ones still work.
  const off = await api(bob.url, "PUT", policyPath, { remoteManagement: false });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.deepEqual(off.body, {
    remoteManagement: false,
    targets: ["127.0.0.1:*"],
    listen: policy.body.listen,
  });
  assertRefused(
    await remote("POST", "services/tcp/other", { host: "127.0.0.1", port: 7003 }),
    403,
    "remote_management_off",
    "remote create",
  );
  assertRefused(
    await remote("DELETE", "services/tcp/echo"),
    403,
    "remote_management_off",
    "remote delete",
  );
  assertRefused(
    await remote("DELETE", `ports/127.0.0.1/tcp/${narrow}`),
    403,
    "remote_management_off",
    "remote port close",
  );
  for (const what of ["services", "ports", "log"]) {
    assertRefused(
      await remote("GET", what),
      403,
      "remote_management_off",
      `remote read of ${what}`,
    );
  }
  assert.deepEqual(await localServices(bob), [{ proto: "tcp", name: "echo", ...echoSvc }]);
  assert.deepEqual(await localPorts(bob), [loopbackMapping]);
  (await openConnection(narrow)).close();
  const local = await api(bob.url, "POST", endpointPath(bob.endpointId, "services/tcp/local"), {
    host: "10.0.0.1",
    port: 22,
  });
  assert.equal(local.status, 201, JSON.stringify(local.body));
  const localWide = await freePort();
  const localAny = await api(
    bob.url,
    "POST",
    endpointPath(bob.endpointId, `ports/0.0.0.0/tcp/${localWide}`),
    {
      target: { service: "echo" },
    },
  );
  assert.equal(localAny.status, 201, JSON.stringify(localAny.body));

  // Bad policy bodies are 400 and change nothing.
  for (
    const bad of [
      { remoteManagement: "no" },
      { targets: "*" },
      { listen: [""] },
      { targets: [22] },
      { surprise: true },
      "not json",
      [],
    ]
  ) {
    const res = await api(bob.url, "PUT", policyPath, bad);
    assert.equal(res.status, 400, `${JSON.stringify(bad)}: ${JSON.stringify(res.body)}`);
    assert.equal(typeof codeOf(res), "string");
  }
  assert.deepEqual((await api(bob.url, "GET", policyPath)).body, off.body);

  // The log shows each refusal with its status, the remote change, and the local ones.
  const log = await auditLog(bob);
  const refused = { user: "root", via: root.endpointId, status: 403 };
  findAudit(log, { ...refused, method: "POST", path: `ports/0.0.0.0/tcp/${wide}` }, "listen");
  findAudit(log, { ...refused, method: "POST", path: "services/tcp/ssh" }, "target");
  findAudit(log, { ...refused, method: "POST", path: "services/tcp/other" }, "off, create");
  findAudit(log, { ...refused, method: "DELETE", path: "services/tcp/echo" }, "off, delete");
  findAudit(log, { ...refused, method: "GET", path: "services" }, "off, read");
  findAudit(log, {
    user: "root",
    via: root.endpointId,
    method: "POST",
    path: "services/tcp/echo",
    status: 201,
    outcome: "ok",
  }, "allowed remote change");
  findAudit(
    log,
    { user: "bob", via: "local", method: "PUT", path: "policy", status: 200 },
    "policy",
  );
  findAudit(log, {
    user: "bob",
    via: "local",
    method: "POST",
    path: "services/tcp/local",
    status: 201,
  }, "local change");
});

Deno.test("a target pattern's * stands for part of an address, not for a host name around it", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob", "root"]);
  const { bob, root } = m.agents;
  const set = await api(bob.url, "PUT", `/api/meshes/${MESH}/policy`, { targets: ["10.0.0.*:22"] });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const remote = (name: string, host: string, port: number) =>
    api(root.url, "POST", endpointPath(bob.endpointName, `services/tcp/${name}`), { host, port });

  // Positive control: an address the pattern names.
  const inside = await remote("inside", "10.0.0.7", 22);
  assert.equal(inside.status, 201, JSON.stringify(inside.body));
  // Another port, another network: refused.
  assertRefused(await remote("port", "10.0.0.7", 23), 403, "target_not_allowed", "port 23");
  assertRefused(await remote("net", "10.0.1.7", 22), 403, "target_not_allowed", "10.0.1.7");
  // A DNS name that merely starts like the pattern resolves wherever its owner likes.
  assertRefused(
    await remote("dns", "10.0.0.7.attacker.example", 22),
    403,
    "target_not_allowed",
    "the host name 10.0.0.7.attacker.example",
  );
  assert.deepEqual(
    (await localServices(bob)).map((s: { name: string }) => s.name),
    ["inside"],
  );
});

Deno.test("an endpoint's audit log survives an agent restart", async () => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["bob", "root"]);
  const { bob, root } = m.agents;
  const svc = { host: "127.0.0.1", port: 7004, users: [], strict: false };
  const made = await api(
    root.url,
    "POST",
    endpointPath(bob.endpointName, "services/tcp/kept"),
    svc,
  );
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const refused = await api(
    root.url,
    "POST",
    endpointPath(bob.endpointName, "ports/0.0.0.0/tcp/7005"),
    {
      target: { service: "kept" },
    },
  );
  assertRefused(refused, 403, "listen_not_allowed", "root listening on 0.0.0.0");
  const before = await auditLog(bob);
  findAudit(before, { user: "root", path: "services/tcp/kept", status: 201 }, "before the restart");
  findAudit(before, { user: "root", path: "ports/0.0.0.0/tcp/7005", status: 403 }, "before");

  await restartJoinedAgent(h, bob);

  assert.deepEqual(await auditLog(bob), before);
  // And logging goes on after the restart.
  const again = await api(root.url, "DELETE", endpointPath(bob.endpointName, "services/tcp/kept"));
  assert.equal(again.status, 200, JSON.stringify(again.body));
  const after = await auditLog(bob);
  assert.deepEqual(after.slice(1), before);
  assert.equal(after[0].user, "root");
  assert.equal(after[0].method, "DELETE");
  assert.equal(after[0].outcome, "ok");
});

/** The login URL the agent printed on stdout (`dashboard login (works once): URL`). */
async function printedLoginUrl(proc: Proc): Promise<string> {
  return await eventually(
    () => {
      for (const line of proc.raw) {
        const m = /dashboard login \(works once\): (http:\/\/\S+)/.exec(line);
        if (m) return m[1];
      }
      return undefined;
    },
    10_000,
    "the login URL on the agent's stdout",
  );
}

/** GETs a login URL; returns status, cookie and the session secret the page hands its script. */
async function useLoginUrl(
  url: string,
): Promise<{ status: number; cookie: string | null; secret?: string }> {
  const res = await fetch(url, { redirect: "manual" });
  const secret = /<meta name="ztm-session" content="([0-9a-f]+)"/.exec(await res.text())?.[1];
  return { status: res.status, cookie: res.headers.get("set-cookie"), secret };
}

Deno.test("the agent API wants its token or a one-time login session (cookie and secret) and refuses foreign origins", async () => {
  await using h = new Harness();
  const agent = await h.startAgent();
  const meshes = `${agent.url}/api/meshes`;

  // No token, a wrong token, a made-up cookie: 401 with a JSON error.
  for (
    const headers of [
      {},
      { authorization: `Bearer ${agent.token}x` },
      { authorization: "Bearer " },
      { cookie: "ztm_session=0123456789abcdef" },
    ] as Record<string, string>[]
  ) {
    const res = await fetch(meshes, { headers });
    assert.equal(res.status, 401, JSON.stringify(headers));
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const body = await res.json();
    assert.equal(typeof body.error?.code, "string");
    assert.equal(typeof body.error?.message, "string");
  }
  // Positive control: the token works.
  const withToken = await api(agent.url, "GET", "/api/meshes");
  assert.equal(withToken.status, 200, JSON.stringify(withToken.body));
  // A login code cannot be minted without the token.
  const noMint = await fetch(`${agent.url}/api/login-codes`, { method: "POST" });
  assert.equal(noMint.status, 401);
  await noMint.body?.cancel();

  // The token file is for the agent's user only.
  const stat = await Deno.stat(`${agent.database}.token`);
  assert.equal((stat.mode ?? 0) & 0o777, 0o600);

  // The printed login URL works once and sets a strict, script-proof cookie; the page hands its
  // script the session's secret, and the API wants both (the cookie alone: 401).
  const url = await printedLoginUrl(agent);
  assert.ok(url.startsWith(`${agent.url}/login?code=`), url);
  const first = await useLoginUrl(url);
  assert.equal(first.status, 200);
  assert.ok(first.cookie, "the login sets a cookie");
  assert.match(first.cookie, /HttpOnly/i);
  assert.match(first.cookie, /SameSite=Strict/i);
  assert.ok(first.secret, "the login page carries the session secret");
  const cookie = first.cookie.split(";")[0];
  const session = { cookie, "x-ztm-session": first.secret };
  const withSession = await fetch(meshes, { headers: session });
  assert.equal(withSession.status, 200);
  assert.deepEqual(await withSession.json(), []);
  const cookieOnly = await fetch(meshes, { headers: { cookie } });
  assert.equal(cookieOnly.status, 401);
  await cookieOnly.body?.cancel();
  const second = await useLoginUrl(url);
  assert.equal(second.status, 401);
  assert.equal(second.cookie, null);
  assert.equal(second.secret, undefined);

  // A fresh URL from the API also works once.
  const minted = await api(agent.url, "POST", "/api/login-codes");
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  assert.ok(minted.body.url.startsWith(`${agent.url}/login?code=`), minted.body.url);
  assert.notEqual(minted.body.url, url);
  const again = await useLoginUrl(minted.body.url);
  assert.equal(again.status, 200);
  assert.match(again.cookie ?? "", /HttpOnly/i);
  const secondSession = await fetch(meshes, {
    headers: { cookie: again.cookie!.split(";")[0], "x-ztm-session": again.secret! },
  });
  assert.equal(secondSession.status, 200);
  await secondSession.body?.cancel();
  // One session's secret does not go with another session's cookie.
  const crossed = await fetch(meshes, { headers: { ...session, cookie: again.cookie! } });
  assert.equal(crossed.status, 401);
  await crossed.body?.cancel();
  const replayed = await useLoginUrl(minted.body.url);
  assert.equal(replayed.status, 401);
  assert.equal(replayed.cookie, null);

  // The session from a page of another origin is refused; from the agent's own origin it works.
  const foreign = await fetch(meshes, { headers: { ...session, origin: "http://evil.example" } });
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json()).error?.code, "foreign_origin");
  const own = await fetch(meshes, { headers: { ...session, origin: agent.url } });
  assert.equal(own.status, 200);
  await own.body?.cancel();
});
