/**
 * The proxy through a real mesh (issue 21): a CA, a hub, and the agents of
 * alice (the client, with her proxy on), bob and carol (providers), with real
 * `curl`, `ssh` through `nc -X 5` to a real `sshd`, and hand-written SOCKS5
 * bytes where the reply code matters.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { curl, exchangeRaw, startHttp } from "../../agent/proxy/_fixture.ts";
import { agentFlags, ztm, ztmOk } from "../fixtures/cli_helpers.ts";
import { api, eventually, Harness, run } from "../fixtures/harness.ts";
import {
  addService,
  MESH,
  type MeshAgent,
  never,
  restartJoinedAgent,
  startMeshOf,
} from "../fixtures/mesh_fixture.ts";
import { freePort } from "../fixtures/net_helpers.ts";

const enc = new TextEncoder();

/** A SOCKS5 CONNECT to `name` (no authentication); the reply code the proxy sent. */
async function socksReply(port: number, name: string): Promise<number> {
  const b = enc.encode(name);
  const got = await exchangeRaw(
    port,
    new Uint8Array([5, 1, 0, 5, 1, 0, 3, b.byteLength, ...b, 0, 80]),
  );
  assert.deepEqual([...got.subarray(0, 3)], [5, 0, 5], `SOCKS5 answer for ${name}: ${[...got]}`);
  return got[3];
}

/** Lines of `agent`'s log with `msg`. */
function logged(agent: MeshAgent, msg: string): Record<string, unknown>[] {
  return agent.proc.logs.filter((l) => l.msg === msg);
}

/** Turns the agent's proxy on at `listen`; returns the API answer. */
async function proxyOn(agent: MeshAgent, listen: unknown) {
  return await api(agent.url, "PUT", `/api/meshes/${MESH}/proxy`, { listen });
}

/** Starts a real sshd on loopback with a fresh host key and one authorized key, or says why not. */
async function startSshd(
  h: Harness,
): Promise<{ port: number; key: string; stop(): Promise<void> } | string> {
  if (Deno.uid() !== 0) return "sshd needs root here (privilege separation)";
  try {
    await Deno.stat("/usr/sbin/sshd");
  } catch {
    return "no /usr/sbin/sshd (apt-get install openssh-server)";
  }
  const dir = await h.tempDir("ztm-sshd-");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host")]);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "user")]);
  await Deno.copyFile(join(dir, "user.pub"), join(dir, "authorized_keys"));
  await Deno.mkdir("/run/sshd", { recursive: true });
  const port = await freePort();
  await Deno.writeTextFile(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${join(dir, "host")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      `PidFile ${join(dir, "sshd.pid")}`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("/usr/sbin/sshd", {
    args: ["-D", "-e", "-f", join(dir, "sshd_config")],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
  };
  try {
    await eventually(
      () =>
        Deno.connect({ hostname: "127.0.0.1", port }).then((c) => (c.close(), true), () => false),
      10_000,
      "sshd listening",
    );
  } catch (err) {
    await stop();
    return `sshd did not start: ${err}`;
  }
  return { port, key: join(dir, "user"), stop };
}

Deno.test("the proxy reaches mesh services by name with real clients, and refuses what it must", async (t) => {
  await using h = new Harness();
  const m = await startMeshOf(h, ["alice", "bob", "carol"]);
  const { alice, bob, carol } = m.agents;
  await using web = startHttp("web");
  await using dupBob = startHttp("dup of bob");
  await using dupCarol = startHttp("dup of carol");
  await using secret = startHttp("secret");
  await addService(bob, "web", web.port, ["alice"]);
  await addService(bob, "dup", dupBob.port, ["alice"]);
  await addService(carol, "dup", dupCarol.port, ["alice"]);
  await addService(bob, "secret", secret.port, []); // bob's and root's only
  const port = await freePort();
  const at = `127.0.0.1:${port}`;

  await t.step("the proxy is off until turned on, then listens where asked", async () => {
    const off = await api(alice.url, "GET", `/api/meshes/${MESH}/proxy`);
    assert.equal(off.status, 200, JSON.stringify(off.body));
    assert.deepEqual(off.body, {
      enabled: false,
      listen: null,
      listening: false,
      address: null,
      error: null,
      connections: 0,
    });
    const on = await proxyOn(alice, at);
    assert.equal(on.status, 200, JSON.stringify(on.body));
    assert.equal(on.body.listening, true);
    assert.equal(on.body.address, at);
    const again = await api(alice.url, "GET", `/api/meshes/${MESH}/proxy`);
    assert.equal(again.body.listen, at);
  });

  await t.step("curl reaches web.mesh over SOCKS5, HTTP CONNECT and plain HTTP", async () => {
    // Alice's agent may not list bob's services for a moment.
    await eventually(
      async () => (await curl(["--socks5-hostname", at, "http://web.mesh/"])).code === 0,
      15_000,
      "web.mesh through the proxy",
    );
    const before = web.accepted;
    const socks = await curl(["--socks5-hostname", at, "http://web.mesh/s?x=1"]);
    assert.equal(socks.out, "hello from web /s?x=1\n", socks.err);
    const plain = await curl(["-x", `http://${at}`, "http://web.mesh/plain"]);
    assert.equal(plain.out, "hello from web /plain\n", plain.err);
    const connect = await curl(["-p", "-x", `http://${at}`, "http://web.mesh:8080/connect"]);
    assert.equal(connect.out, "hello from web /connect\n", connect.err);
    const pinned = await curl(["--socks5-hostname", at, `http://web.${bob.endpointName}.mesh/p`]);
    assert.equal(pinned.out, "hello from web /p\n", pinned.err);
    const byUser = await curl(["-x", `http://${at}`, "http://web.bob.user.mesh/u"]);
    assert.equal(byUser.out, "hello from web /u\n", byUser.err);
    assert.equal(web.accepted, before + 5);
  });

  await t.step(
    "an unknown name: SOCKS reply 4, HTTP 502 with a plain message, one log line each",
    async () => {
      const before = logged(alice, "proxy refused").length;
      assert.equal(await socksReply(port, "nope.mesh"), 4);
      const r = await curl(["-x", `http://${at}`, "-w", "%{http_code}", "http://nope.mesh/"]);
      assert.equal(r.out, "No endpoint offers tcp/nope (nope.mesh)\n502");
      const lines = logged(alice, "proxy refused").slice(before);
      assert.equal(lines.length, 2);
      assert.deepEqual(lines.map((l) => [l.service, l.status]), [["nope.mesh", 404], [
        "nope.mesh",
        404,
      ]]);
    },
  );

  await t.step(
    "a name two users offer is refused naming them; the user form picks one",
    async () => {
      await eventually(
        async () =>
          (await curl(["-x", `http://${at}`, "http://dup.carol.user.mesh/"])).out ===
            "hello from dup of carol /\n",
        15_000,
        "carol's dup through the proxy",
      );
      assert.equal(await socksReply(port, "dup.mesh"), 4);
      const r = await curl(["-x", `http://${at}`, "-w", "%{http_code}", "http://dup.mesh/"]);
      assert.equal(
        r.out,
        "Several users offer tcp/dup: bob, carol; name one, as in dup.bob.user.mesh\n409",
      );
      const viaBob = await curl(["--socks5-hostname", at, "http://dup.bob.user.mesh/"]);
      assert.equal(viaBob.out, "hello from dup of bob /\n", viaBob.err);
    },
  );

  await t.step(
    "a service alice may not use: the provider refuses, SOCKS reply 2, no connection to it",
    async () => {
      const refusedAtBob = logged(bob, "tunnel refused").length;
      assert.equal(await socksReply(port, "secret.mesh"), 2);
      const r = await curl(["-x", `http://${at}`, "-w", "%{http_code}", "http://secret.mesh/"]);
      assert.equal(r.out, `User "alice" may not use service tcp/secret\n403`);
      // The provider itself refused (its own log), and the target never saw a connection.
      assert.equal(logged(bob, "tunnel refused").length, refusedAtBob + 2);
      assert.equal(secret.accepted, 0);
      // The proxy counts like a port mapping: its connections and its last refusal.
      const s = await api(alice.url, "GET", `/api/meshes/${MESH}/proxy`);
      assert.equal(s.body.state.lastError.code, "access_denied");
      assert.ok(s.body.state.connections >= 7, JSON.stringify(s.body.state));
      assert.ok(s.body.state.bytesDown > 0);
    },
  );

  await t.step("ssh through nc -X 5 reaches a real sshd by name", async () => {
    const sshd = await startSshd(h);
    if (typeof sshd === "string") {
      console.log(`SKIPPED the ssh step: ${sshd}`);
      return;
    }
    try {
      await addService(bob, "ssh", sshd.port, ["alice"]);
      const user = Deno.env.get("USER") ?? "root";
      const ssh = () =>
        run("timeout", [
          "20",
          "ssh",
          "-o",
          `ProxyCommand=nc -X 5 -x ${at} %h %p`,
          "-o",
          "BatchMode=yes",
          "-o",
          "StrictHostKeyChecking=no",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "LogLevel=ERROR",
          "-i",
          sshd.key,
          `${user}@ssh.mesh`,
          "echo",
          "hello-through-ssh",
        ], { allowFail: true });
      const out = await eventually(
        async () => {
          const r = await ssh();
          return r.code === 0 ? r.stdout : null;
        },
        20_000,
        "ssh through the proxy",
      );
      assert.equal(out, "hello-through-ssh\n");
    } finally {
      await sshd.stop();
    }
  });

  await t.step("refused listen addresses: not loopback, or taken", async () => {
    const wide = await proxyOn(alice, "0.0.0.0:1080");
    assert.equal(wide.status, 400);
    assert.equal(wide.body.error.code, "listen_not_loopback");
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const r = await proxyOn(alice, `127.0.0.1:${taken.addr.port}`);
      assert.equal(r.status, 409);
      assert.equal(r.body.error.code, "port_in_use");
    } finally {
      taken.close();
    }
    // The running proxy and its stored address did not change.
    const s = await api(alice.url, "GET", `/api/meshes/${MESH}/proxy`);
    assert.equal(s.body.listen, at);
    assert.equal(s.body.listening, true);
  });

  await t.step("the proxy comes back after a restart, and DELETE closes its port", async () => {
    await restartJoinedAgent(h, alice);
    await eventually(
      async () =>
        (await curl(["--socks5-hostname", at, "http://web.mesh/back"])).out ===
          "hello from web /back\n",
      15_000,
      "the proxy after a restart",
    );
    const off = await api(alice.url, "DELETE", `/api/meshes/${MESH}/proxy`);
    assert.equal(off.status, 200);
    assert.equal(off.body.enabled, false);
    await never(
      () =>
        Deno.connect({ hostname: "127.0.0.1", port }).then((c) => (c.close(), true), () => false),
      300,
      "a connection to the closed proxy port",
    );
  });

  await t.step("ztm proxy on, status and off drive the same proxy", async () => {
    const flags = agentFlags(alice.proc);
    const p2 = await freePort();
    const on = await ztmOk(["proxy", "on", `--listen=127.0.0.1:${p2}`, ...flags]);
    assert.match(on, new RegExp(`listens on 127\\.0\\.0\\.1:${p2} \\(SOCKS5 and HTTP\\)`));
    assert.match(on, /curl --socks5-hostname 127\.0\.0\.1:\d+ http:\/\/SERVICE\.mesh\//);
    const got = await curl(["--socks5-hostname", `127.0.0.1:${p2}`, "http://web.mesh/cli"]);
    assert.equal(got.out, "hello from web /cli\n", got.err);
    const status = JSON.parse(await ztmOk(["proxy", "status", "--json", ...flags]));
    assert.equal(status.listen, `127.0.0.1:${p2}`);
    const wide = await ztm(["proxy", "on", "--listen=0.0.0.0:1080", ...flags]);
    assert.equal(wide.code, 1);
    assert.match(wide.stderr, /loopback only/);
    assert.match(await ztmOk(["proxy", "off", ...flags]), /The proxy of mesh "test" is off/);
  });
});
