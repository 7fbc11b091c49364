/**
 * First contact, the processes: one database has one agent (and one CA), a
 * hub that stops with agents connected says nothing alarming, and logs read
 * as text on a terminal (a real pseudo-terminal through `script`) and as JSON
 * lines elsewhere.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  api,
  eventually,
  Harness,
  issueUser,
  joinMesh,
  ROOT,
  startProc,
} from "../fixtures/harness.ts";

Deno.test("a second agent on the same database refuses to start and names the first one's pid", async () => {
  await using h = new Harness();
  const first = await h.startAgent();
  const second = h.spawn("agent-2", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${first.database}`,
  ]);
  // On a deadline, so that an agent that does start fails this test instead of hanging it.
  const failed = await second.waitForLog((l) => l.msg === "start failed", 20_000);
  assertEquals((await second.status).code, 1, second.tail());
  assertEquals(
    String(failed.err).split(";")[0],
    `another agent (pid ${first.child.pid}) is using ${first.database}`,
  );
  assert(!second.logs.some((l) => l.msg === "listening"), "the second agent never listened");
  // The first one still answers, and after it stops (even by SIGKILL) the database is free.
  assertEquals((await api(first.url, "GET", "/api/meshes")).status, 200);
  await first.kill();
  const third = await h.spawnService("agent-3", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${first.database}`,
  ]);
  assert(!third.exited);
});

Deno.test("a second CA on the same database refuses to start", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const second = h.spawn("ca-2", "ca/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${ca.database}`,
  ]);
  const failed = await second.waitForLog((l) => l.msg === "start failed", 20_000);
  assertEquals((await second.status).code, 1, second.tail());
  assert(
    String(failed.err).startsWith(`another CA (pid ${ca.child.pid}) is using`),
    second.tail(),
  );
});

Deno.test("a hub stopped with Ctrl-C while agents are connected stops cleanly", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const agents = await Promise.all([h.startAgent({ name: "a1" }), h.startAgent({ name: "a2" })]);
  for (const [i, agent] of agents.entries()) {
    await joinMesh(agent.url, "work", await issueUser(ca.url, `u${i}`), hub.address, `ep${i}`);
  }
  for (const agent of agents) {
    await eventually(
      async () => (await api(agent.url, "GET", "/api/meshes/work")).body?.status?.connected,
      20_000,
      "the agent connects",
    );
  }
  hub.signal("SIGINT");
  const status = await hub.status;
  assertEquals(status.code, 0, hub.tail());
  assert(hub.logs.some((l) => l.msg === "stopping"), hub.tail());
  assert(!hub.logs.some((l) => l.msg === "stop failed"), hub.tail());
  assert(!hub.raw.some((l) => /HTTP\/2 sockets/.test(l)), hub.tail());
});

/** Runs `cmd` under a real pseudo-terminal (`script` from bsdutils) and returns what it printed. */
async function underTerminal(h: Harness, name: string, cmd: string[]) {
  const quoted = cmd.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const proc = startProc(name, "script", ["-qfec", quoted, "/dev/null"], {
    HOME: await h.tempDir("ztm-tty-home-"),
  });
  return proc;
}

Deno.test("on a terminal the agent logs human lines; piped, JSON lines; --log-format and --log-level choose", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-tty-");
  const deno = Deno.execPath();
  const entry = join(ROOT, "agent/main.ts");
  const tty = await underTerminal(h, "tty-agent", [
    deno,
    "run",
    "-A",
    entry,
    "--listen=127.0.0.1:0",
    `--database=${join(dir, "a.db")}`,
  ]);
  try {
    const line = await eventually(
      () => tty.raw.find((l) => / INFO {2}agent listening addr=127\.0\.0\.1:\d+/.test(l)),
      20_000,
      "a human listening line",
    );
    assert(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}agent listening addr=/.test(line.trim()), line);
    assert(!tty.raw.some((l) => l.trimStart().startsWith("{")), tty.tail());
  } finally {
    await tty.stop();
  }
  // Piped (as in every other test) the same agent writes JSON lines; --log-level=debug adds
  // one line per API request, which the default level leaves out.
  const piped = await h.spawnService("json-agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${join(dir, "b.db")}`,
    "--log-level=debug",
  ]);
  await fetch(`${piped.url}/api/meshes`).then((r) => r.body?.cancel());
  await piped.waitForLog((l) => l.msg === "request" && l.level === "debug" && l.status === 401);
  const quiet = await h.spawnService("quiet-agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${join(dir, "c.db")}`,
  ]);
  await fetch(`${quiet.url}/api/meshes`).then((r) => r.body?.cancel());
  await quiet.stop();
  assert(!quiet.logs.some((l) => l.msg === "request"), quiet.tail());
  // --log-format=text forces the human form without a terminal; a bad value is a usage error.
  const text = h.spawn("text-agent", "agent/main.ts", [
    "--listen=127.0.0.1:0",
    `--database=${join(dir, "d.db")}`,
    "--log-format=text",
  ]);
  await eventually(
    () => text.raw.find((l) => / INFO {2}agent listening addr=/.test(l)),
    20_000,
    "a human line without a terminal",
  );
  assertEquals(text.logs.length, 0, text.tail());
  const bad = h.spawn("bad-agent", "agent/main.ts", ["--log-format=xml"]);
  assertEquals((await bad.status).code, 2);
  assert(
    bad.raw.some((l) => l.includes('--log-format must be one of auto, json, text, got "xml"')),
  );
});

Deno.test("a copied database's agent that takes over and dies leaves the real endpoint online, as its status says", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const real = await h.startAgent({ name: "real" });
  await joinMesh(real.url, "work", await issueUser(ca.url, "alice"), hub.address, "laptop");
  const connected = (url: string) => async () =>
    (await api(url, "GET", "/api/meshes/work")).body?.status?.connected;
  await eventually(connected(real.url), 20_000, "the real agent connects");
  // A copy of its state (stopped to copy it whole), run as a second agent: the same endpoint id.
  await real.stop();
  const copyDir = await h.tempDir("ztm-copy-");
  for (const f of ["agent.db", "agent.db.token"]) {
    Deno.copyFileSync(join(real.dir, f), join(copyDir, f));
  }
  const again = await h.startAgent({ dir: real.dir, name: "real-again" });
  await eventually(connected(again.url), 20_000, "the real agent reconnects");
  const copy = await h.startAgent({ dir: copyDir, name: "copy" });
  await eventually(connected(copy.url), 20_000, "the copy takes the endpoint over");
  await copy.kill();
  // The hub and the real agent agree: it is online, and its own status says connected.
  await eventually(
    async () => {
      const mesh = await api(again.url, "GET", "/api/meshes/work");
      if (!mesh.body?.status?.connected) return false;
      const ep = await api(again.url, "GET", `/api/meshes/work/endpoints/${mesh.body.endpoint.id}`);
      return ep.status === 200 && ep.body.online === true;
    },
    30_000,
    "the real endpoint online at the hub while its agent says connected",
  );
});
