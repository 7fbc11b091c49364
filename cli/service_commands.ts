/**
 * `ztm service install ca|hub|agent`: a systemd unit that runs one component at
 * boot as a dedicated system user, its state under `/var/lib/ztm/COMPONENT`,
 * with the hardening a network daemon is expected to have. `--print` shows the
 * unit and changes nothing; without it the unit is written, the user is made
 * if missing, the npm packages are cached where the service can read them, and
 * the command prints the `systemctl` line that starts it.
 *
 * The unit runs this checkout's `cli/main.ts` with the Deno that runs this
 * command (`deno compile` needs a runtime download this project does not rely
 * on), so the checkout must stay where it is and be readable by the user.
 */
import { cliError } from "./errors.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Flags, parseFlags, UsageError } from "@ztm/shared/flags";
import type { Command } from "./command.ts";

/** What a unit needs to know about one component. */
interface ServiceKind {
  description: string;
  /** The component flag that places its state, and the file or folder under the state dir. */
  stateFlag: string;
  stateName: string;
  /** Descriptors: a hub holds one per agent session and tunnel leg. */
  fileLimit: number;
  spec: () => Promise<import("@ztm/shared/flags").CommandSpec>;
}

const KINDS: Record<string, ServiceKind> = {
  ca: {
    description: "ztm certificate authority",
    stateFlag: "database",
    stateName: "ztm-ca.db",
    fileLimit: 4096,
    spec: async () => (await import("@ztm/ca/main")).CA_COMMAND,
  },
  hub: {
    description: "ztm hub (mesh relay)",
    stateFlag: "data-dir",
    stateName: "",
    fileLimit: 1048576,
    spec: async () => (await import("@ztm/hub/main")).HUB_COMMAND,
  },
  agent: {
    description: "ztm agent (mesh endpoint)",
    stateFlag: "database",
    stateName: "ztm.db",
    fileLimit: 65536,
    spec: async () => (await import("@ztm/agent/main")).AGENT_COMMAND,
  },
};

/** Everything that goes into one unit file. */
export interface UnitOptions {
  component: string;
  user: string;
  stateDir: string;
  deno: string;
  /** The `cli/main.ts` the unit runs. */
  entry: string;
  /** The component's own flags, already checked. */
  flags: string[];
}

/** Quotes one word for a systemd command line (systemd.service(5), "Command lines"). */
function quoteWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word.replaceAll("%", "%%");
  return `"${word.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("%", "%%")}"`;
}

/** The text of the unit for `opts`. Throws `UsageError` for an unknown component. */
export function unitText(opts: UnitOptions): string {
  const kind = KINDS[opts.component];
  if (!kind) throw new UsageError(`Unknown component "${opts.component}": use ca, hub or agent`);
  const stateFlag = `--${kind.stateFlag}`;
  const placed = opts.flags.some((f) => f === stateFlag || f.startsWith(`${stateFlag}=`));
  const statePath = kind.stateName ? join(opts.stateDir, kind.stateName) : opts.stateDir;
  const args = [
    opts.deno,
    "run",
    "--allow-all",
    "--cached-only",
    "--v8-flags=--max-semi-space-size=2",
    opts.entry,
    opts.component,
    ...(placed ? [] : [`${stateFlag}=${statePath}`]),
    ...opts.flags,
  ];
  // A checkout under /home or /root stays readable; everything else in the homes is hidden.
  const inHome = [opts.entry, opts.deno].some((p) => /^\/(home|root)(\/|$)/.test(p));
  const stateName = opts.stateDir.replace(/^\/var\/lib\//, "");
  const managed = stateName !== opts.stateDir;
  return [
    "# Written by `ztm service install`; `ztm service install --print` shows it again.",
    "[Unit]",
    `Description=${kind.description}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `User=${opts.user}`,
    `Group=${opts.user}`,
    `Environment=HOME=${opts.stateDir}`,
    `Environment=DENO_DIR=${join(opts.stateDir, "deno")}`,
    "Environment=NO_COLOR=1",
    `WorkingDirectory=${opts.stateDir}`,
    `ExecStart=${args.map(quoteWord).join(" ")}`,
    "Restart=on-failure",
    "RestartSec=2",
    `LimitNOFILE=${kind.fileLimit}`,
    ...(managed ? [`StateDirectory=${stateName}`, "StateDirectoryMode=0700"] : []),
    `ReadWritePaths=${opts.stateDir}`,
    "UMask=0077",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    `ProtectHome=${inHome ? "read-only" : "yes"}`,
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "CapabilityBoundingSet=",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/** Splits `--flags` on white space; a value with spaces is refused with a plain reason. */
function componentFlags(text: string | undefined): string[] {
  const words = (text ?? "").split(/\s+/).filter((w) => w !== "");
  for (const w of words) {
    if (!w.startsWith("--")) {
      throw new UsageError(
        `--flags takes the component's own flags (--name=value …), got "${w}"; values cannot hold spaces`,
      );
    }
  }
  return words;
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<void> {
  const out = await new Deno.Command(cmd, { args, env, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ");
    throw cliError("service_install_failed", `${cmd} ${args.join(" ")} failed: ${why}`);
  }
}

/** `ztm service install`. */
export const SERVICE_INSTALL: Command = {
  spec: {
    name: "ztm service install",
    summary:
      "Writes a systemd unit that runs a component at boot as a dedicated user (--print only shows it).",
    args: [{ name: "COMPONENT", help: "ca, hub or agent" }],
    flags: [
      { name: "print", kind: "boolean", help: "print the unit and change nothing" },
      {
        name: "flags",
        kind: "string",
        optional: true,
        help: 'the component\'s own flags, e.g. "--ca=ca.example.com:9999 --names=hub.example.com"',
      },
      { name: "user", kind: "string", default: "ztm", help: "system user the service runs as" },
      {
        name: "state-dir",
        kind: "string",
        optional: true,
        help: "the service's state (default: /var/lib/ztm/COMPONENT, made 0700 by systemd)",
      },
      {
        name: "unit-dir",
        kind: "string",
        default: "/etc/systemd/system",
        help: "where the unit file is written",
      },
    ],
    examples: [
      "ztm service install hub --print --flags=--ca=127.0.0.1:9999",
      'sudo ztm service install hub --flags="--ca=127.0.0.1:9999 --names=hub.example.com"',
      "sudo ztm service install agent && sudo systemctl enable --now ztm-agent",
    ],
  },
  async run(flags: Flags): Promise<void> {
    const component = flags.arg("COMPONENT")!;
    const kind = KINDS[component];
    if (!kind) throw new UsageError(`Unknown component "${component}": use ca, hub or agent`);
    const user = flags.string("user")!;
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) {
      throw new UsageError(`Bad --user "${user}": use a system user name (a-z 0-9 _ -)`);
    }
    const stateDir = flags.string("state-dir") ?? `/var/lib/ztm/${component}`;
    if (!stateDir.startsWith("/")) {
      throw new UsageError(`--state-dir must be an absolute path, got "${stateDir}"`);
    }
    const extra = componentFlags(flags.string("flags"));
    // The component checks its flags now, not at boot: a bad one is a usage error here.
    const checked = parseFlags(await kind.spec(), extra);
    if (checked === "help" || checked === "version") {
      throw new UsageError("--flags cannot hold --help or --version");
    }
    const entry = join(dirname(fileURLToPath(import.meta.url)), "main.ts");
    const unit = unitText({
      component,
      user,
      stateDir,
      deno: Deno.execPath(),
      entry,
      flags: extra,
    });
    if (flags.boolean("print")) {
      console.log(unit);
      return;
    }
    const unitPath = join(flags.string("unit-dir")!, `ztm-${component}.service`);
    const exists = await new Deno.Command("id", { args: ["-u", user], stdout: "null" }).output();
    if (!exists.success) {
      await run("useradd", [
        "--system",
        "--user-group",
        "--home-dir",
        stateDir,
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        user,
      ]);
      console.log(`Made system user ${user}`);
    }
    const reach = await new Deno.Command("runuser", {
      args: ["-u", user, "--", "test", "-r", entry, "-a", "-x", Deno.execPath()],
    }).output();
    if (!reach.success) {
      throw cliError(
        "service_unreachable_code",
        `User ${user} cannot read ${entry} or run ${Deno.execPath()}: put the checkout and deno ` +
          `where it can (for example /opt/ztm and /usr/local/bin/deno), then run this again`,
      );
    }
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
    await run("chown", [`${user}:${user}`, stateDir]);
    await Deno.chmod(stateDir, 0o700);
    // The service runs with --cached-only: fetch the npm packages now, as its user, into its cache.
    await run("runuser", [
      "-u",
      user,
      "--",
      "env",
      `HOME=${stateDir}`,
      `DENO_DIR=${join(stateDir, "deno")}`,
      Deno.execPath(),
      "cache",
      entry,
    ]);
    await Deno.writeTextFile(unitPath, unit, { mode: 0o644 });
    console.log(`Wrote ${unitPath}`);
    const booted = await Deno.stat("/run/systemd/system").then(() => true, () => false);
    if (booted) await run("systemctl", ["daemon-reload"]);
    console.log(
      `Start it now and at every boot: systemctl enable --now ztm-${component}` +
        (booted
          ? ""
          : "\n(systemd is not running on this machine; the unit is ready for when it is)"),
    );
  },
};
