/**
 * `ztm service install`: the units pass `systemd-analyze verify` (Debian's
 * systemd), carry the hardening, refuse bad component flags, and, installed
 * for real as root, run the component as its own user from the cached modules.
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ztm } from "../fixtures/cli_helpers.ts";
import { ROOT } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";

const HARDENING = [
  "NoNewPrivileges=yes",
  "ProtectSystem=strict",
  "PrivateTmp=yes",
  "Restart=on-failure",
  "UMask=0077",
  "CapabilityBoundingSet=",
];

async function analyze(path: string): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("systemd-analyze", {
    args: ["verify", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}

const FLAGS: Record<string, string> = {
  ca: "--listen=127.0.0.1:9999",
  hub: "--ca=ca.example.com:9999 --names=hub.example.com",
  agent: "--name=server-1",
};

Deno.test("each component's unit passes systemd-analyze verify and is hardened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ztm-units-" });
  try {
    for (const component of ["ca", "hub", "agent"]) {
      const run = await ztm([
        "service",
        "install",
        component,
        "--print",
        `--flags=${FLAGS[component]}`,
      ]);
      assertEquals(run.code, 0, `${component}: ${run.stderr}`);
      const unit = run.stdout;
      for (const line of HARDENING) assert(unit.includes(`\n${line}\n`), `${component}: ${line}`);
      assert(unit.includes(`\nUser=ztm\n`), unit);
      assert(unit.includes(`\nReadWritePaths=/var/lib/ztm/${component}\n`), unit);
      assert(unit.includes(`${FLAGS[component]}\n`), `${component} keeps its flags: ${unit}`);
      const path = join(dir, `ztm-${component}.service`);
      await Deno.writeTextFile(path, unit);
      const verdict = await analyze(path);
      assertEquals(verdict, { code: 0, stderr: "" }, `${component} unit`);
    }
    // The check is live: a unit with a key systemd does not know is reported.
    const bad = join(dir, "ztm-bad.service");
    await Deno.writeTextFile(bad, "[Service]\nExecStart=/bin/true\nHardenIt=yes\n");
    assert((await analyze(bad)).stderr.includes("Unknown key"), "systemd-analyze reports");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("service install checks the component's flags before writing anything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ztm-units-" });
  try {
    const typo = await ztm(["service", "install", "hub", "--flags=--caa=x:1", `--unit-dir=${dir}`]);
    assertEquals(typo.code, 2, typo.stderr);
    assert(typo.stderr.includes("caa"), typo.stderr);
    const missing = await ztm(["service", "install", "hub", `--unit-dir=${dir}`]);
    assertEquals(missing.code, 2, missing.stderr);
    assert(missing.stderr.includes("--ca is required"), missing.stderr);
    const unknown = await ztm(["service", "install", "relay", "--print"]);
    assertEquals(unknown.code, 2, unknown.stderr);
    assert(unknown.stderr.includes('Unknown component "relay"'), unknown.stderr);
    assertEquals([...Deno.readDirSync(dir)], [], "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The files of the project a unit runs: the workspace's config and its members. */
const MEMBERS = ["deno.json", "deno.lock", "shared", "ca", "hub", "agent", "cli", "ui"];

/**
 * Copies the project's members into `to`, readable by every user (`0755`
 * folders, `0644` files): the checkout itself may sit in a folder a new
 * system user cannot enter (CI clones into a `0700` mktemp folder), and a
 * service needs its code where its user can read it, as the README says.
 */
async function readableCopy(to: string): Promise<void> {
  await Deno.mkdir(to, { mode: 0o755 });
  const copy = await new Deno.Command("cp", {
    args: ["-R", ...MEMBERS.map((m) => join(ROOT, m)), to],
    stderr: "piped",
  }).output();
  assertEquals(copy.code, 0, new TextDecoder().decode(copy.stderr));
  const chmod = await new Deno.Command("chmod", { args: ["-R", "u+rwX,go=rX", to] }).output();
  assertEquals(chmod.code, 0);
}

/** True when systemd is this machine's init and can start units (not so in most containers). */
function systemdRuns(): boolean {
  try {
    return Deno.statSync("/run/systemd/system").isDirectory;
  } catch {
    return false;
  }
}

async function output(cmd: string, args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: (dec.decode(out.stdout) + dec.decode(out.stderr)).trim() };
}

/** Polls the CA at `port` for up to 20 s; true once it answers. */
async function caAnswers(port: number): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/api/certificates/ca`)
      .then(async (r) => (await r.text(), r.ok), () => false);
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * Installs the CA unit for real (root only: it makes a system user) from a
 * world-readable copy of the project, checks the installed unit with
 * `systemd-analyze verify`, and runs it: with `systemctl` where systemd is
 * init, else (containers, CI) its `ExecStart` as its user with `runuser`,
 * its `Environment` and its `WorkingDirectory`, as systemd would.
 */
Deno.test({
  name: "an installed CA unit runs as its own user from its state directory",
  ignore: Deno.uid() !== 0,
  async fn() {
    const user = `ztmt${Math.floor(Math.random() * 1e6)}`;
    const booted = systemdRuns();
    // A unit has a private /tmp (PrivateTmp=yes): under a running systemd its files live in /var/lib.
    const dir = booted
      ? await Deno.makeTempDir({ dir: "/var/lib", prefix: "ztm-service-" })
      : await Deno.makeTempDir({ prefix: "ztm-service-" });
    await Deno.chmod(dir, 0o755);
    const checkout = join(dir, "ztm");
    const stateDir = join(dir, "ca");
    const unitName = `${user}-ca.service`;
    const port = await freePort();
    let child: Deno.ChildProcess | undefined;
    try {
      await readableCopy(checkout);
      // The unit runs the deno that ran the install: one the new user can run.
      const deno = join(dir, "deno");
      await Deno.copyFile(Deno.execPath(), deno);
      await Deno.chmod(deno, 0o755);
      const run = await ztm([
        "service",
        "install",
        "ca",
        `--user=${user}`,
        `--state-dir=${stateDir}`,
        `--unit-dir=${dir}`,
        `--flags=--listen=127.0.0.1:${port}`,
      ], { deno, root: checkout, env: Deno.env.toObject() }); // the caller's proxy and CA settings reach npm
      assertEquals(run.code, 0, run.stderr);
      assert(run.stdout.includes(`systemctl enable --now ztm-ca`), run.stdout);
      const info = await Deno.stat(stateDir);
      assertEquals(info.mode! & 0o777, 0o700);
      const uid = Number((await output("id", ["-u", user])).text);
      assertEquals(info.uid, uid, "the state belongs to the service user");
      const unitPath = join(dir, "ztm-ca.service");
      const unit = await Deno.readTextFile(unitPath);
      assert(unit.includes(`${join(checkout, "cli", "main.ts")} ca`), unit);
      // The installed unit, with its real user and paths, passes the same check as the printed ones.
      assertEquals(await analyze(unitPath), { code: 0, stderr: "" }, "the installed unit");
      if (booted) {
        await Deno.copyFile(unitPath, join("/run/systemd/system", unitName));
        for (const args of [["daemon-reload"], ["start", unitName]]) {
          const r = await output("systemctl", args);
          assertEquals(r.code, 0, `systemctl ${args.join(" ")}: ${r.text}`);
        }
      } else {
        // Run the unit's command as systemd would: its user, its environment, its directory.
        const env = [...unit.matchAll(/^Environment=(.*)$/gm)].map((m) => m[1]);
        const exec = /^ExecStart=(.*)$/m.exec(unit)![1].split(" ");
        const cwd = /^WorkingDirectory=(.*)$/m.exec(unit)![1];
        child = new Deno.Command("runuser", {
          args: ["-u", user, "--", "env", "-i", ...env, ...exec],
          cwd,
          stdout: "null",
          stderr: "piped",
        }).spawn();
      }
      assert(
        await caAnswers(port),
        `the CA answers from the unit's command line (cached modules only; ${
          booted ? "systemctl" : "runuser, systemd is not init here"
        })`,
      );
      const db = await Deno.stat(join(stateDir, "ztm-ca.db"));
      assertEquals(db.uid, uid, "the database is the service user's");
      assertEquals(db.mode! & 0o777, 0o600);
    } finally {
      if (child) {
        // runuser forwards the signal to the CA it runs.
        child.kill("SIGTERM");
        await child.stderr.cancel();
        await child.status;
      }
      if (booted) {
        await output("systemctl", ["stop", unitName]);
        await Deno.remove(join("/run/systemd/system", unitName)).catch(() => {});
        await output("systemctl", ["daemon-reload"]);
      }
      await new Deno.Command("userdel", { args: [user], stderr: "null" }).output();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
