/**
 * `ztm service install`: the unit text (its command line quoted for
 * systemd, the state flag added unless given, the sandbox chosen by where
 * the checkout and the state live), and the command line refused before
 * anything is written. Only `--print` runs here: installing for real makes a
 * system user (tests/cli/service_unit_test.ts does, as root).
 */
import assert from "node:assert/strict";
import { UsageError } from "@ztm/shared/flags";
import { SERVICE_INSTALL, type UnitOptions, unitText } from "./service_commands.ts";
import { runCommand } from "./_fixture.ts";

const BASE: UnitOptions = {
  component: "hub",
  user: "ztm",
  stateDir: "/var/lib/ztm/hub",
  deno: "/usr/local/bin/deno",
  entry: "/opt/ztm/cli/main.ts",
  flags: ["--ca=ca.example.com:9999"],
};

/** The value of `key=` in a unit (the first line that sets it). */
function setting(unit: string, key: string): string | undefined {
  return unit.split("\n").find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
}

Deno.test("unitText runs the component from the checkout with its state flag and flags", () => {
  const unit = unitText(BASE);
  assert.equal(
    setting(unit, "ExecStart"),
    "/usr/local/bin/deno run --allow-all --cached-only --v8-flags=--max-semi-space-size=2 " +
      "/opt/ztm/cli/main.ts hub --data-dir=/var/lib/ztm/hub --ca=ca.example.com:9999",
  );
  assert.equal(setting(unit, "Description"), "ztm hub (mesh relay)");
  assert.equal(setting(unit, "User"), "ztm");
  assert.equal(setting(unit, "LimitNOFILE"), "1048576");
  assert.equal(setting(unit, "StateDirectory"), "ztm/hub");
  assert.equal(setting(unit, "Environment"), "HOME=/var/lib/ztm/hub");
  assert.ok(unit.includes("\nEnvironment=DENO_DIR=/var/lib/ztm/hub/deno\n"));
  assert.equal(setting(unit, "ProtectHome"), "yes");
  assert.ok(unit.endsWith("[Install]\nWantedBy=multi-user.target\n"));

  // A CA's and an agent's state is a database file under the state dir.
  assert.match(
    setting(unitText({ ...BASE, component: "ca", flags: [] }), "ExecStart")!,
    / ca --database=\/var\/lib\/ztm\/hub\/ztm-ca\.db$/,
  );
  // A state flag given is not given twice.
  const placed = setting(unitText({ ...BASE, flags: ["--data-dir=/srv/hub"] }), "ExecStart")!;
  assert.ok(placed.endsWith(" hub --data-dir=/srv/hub"), placed);
});

Deno.test("unitText quotes words for systemd and fits the sandbox to the paths", () => {
  const unit = unitText({
    ...BASE,
    entry: "/home/al ice/ztm/cli/main.ts",
    stateDir: "/srv/ztm",
    flags: ['--names=a"b%', "--x=100%"],
  });
  const exec = setting(unit, "ExecStart")!;
  assert.ok(exec.includes(' "/home/al ice/ztm/cli/main.ts" hub '), exec);
  assert.ok(exec.endsWith(' "--names=a\\"b%%" --x=100%%'), exec);
  // A checkout in a home stays readable; a state dir outside /var/lib is not systemd's to make.
  assert.equal(setting(unit, "ProtectHome"), "read-only");
  assert.equal(setting(unit, "StateDirectory"), undefined);
  assert.equal(setting(unit, "ReadWritePaths"), "/srv/ztm");
  assert.throws(
    () => unitText({ ...BASE, component: "relay" }),
    new UsageError('Unknown component "relay": use ca, hub or agent'),
  );
});

Deno.test("ztm service install --print shows the unit and refuses a bad command line", async () => {
  const unit = await runCommand(SERVICE_INSTALL, [
    "agent",
    "--print",
    "--user=ztm-agent",
    "--flags=--name=web-1",
  ]);
  assert.equal(setting(unit, "User"), "ztm-agent");
  assert.match(
    setting(unit, "ExecStart")!,
    / agent --database=\/var\/lib\/ztm\/agent\/ztm\.db --name=web-1$/,
  );
  const refused = async (args: string[], message: string | RegExp) =>
    await assert.rejects(runCommand(SERVICE_INSTALL, args), (err: Error) => {
      assert.ok(err instanceof UsageError, err.message);
      if (typeof message === "string") assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    });
  await refused(["relay", "--print"], 'Unknown component "relay": use ca, hub or agent');
  await refused(
    ["agent", "--print", "--user=Root"],
    'Bad --user "Root": use a system user name (a-z 0-9 _ -)',
  );
  await refused(
    ["agent", "--print", "--state-dir=var/lib/ztm"],
    '--state-dir must be an absolute path, got "var/lib/ztm"',
  );
  await refused(
    ["agent", "--print", "--flags=--name=web 1"],
    '--flags takes the component\'s own flags (--name=value …), got "1"; values cannot hold spaces',
  );
  await refused(["agent", "--print", "--flags=--help"], "--flags cannot hold --help or --version");
  // The component's own flags are checked now, not at boot.
  await refused(["hub", "--print", "--flags=--caa=x:1"], /caa/);
  await refused(["hub", "--print"], "--ca is required");
});
