/**
 * The `ssh -N -L` baseline: a throwaway `sshd` on a free 127.0.0.1 port and an
 * `ssh` client that forwards local ports to loopback targets through it.
 *
 * Everything lives in a temp dir: a fresh host key, a fresh client key and an
 * authorized_keys file holding only that key. sshd reads no system config
 * (`-f /dev/null`); its options come as `-o` flags: key-only auth, forwarding
 * only to 127.0.0.1, no PAM, `StrictModes no` (the temp dir's owner checks do
 * not matter here), and root may log in with a key since the benchmark may
 * run as root. The client uses aes128-gcm (what ssh picks on AES-NI machines,
 * and the baseline the README's Performance section compares against) and
 * trusts the host key blindly (`StrictHostKeyChecking=no`,
 * `UserKnownHostsFile=/dev/null`): it is ours.
 *
 * As root, OpenSSH needs its privilege-separation directory `/run/sshd`, which
 * Debian's service creates at start; when it is missing, this creates it
 * (empty, 0755), as that service would, and says so.
 */
import { userInfo } from "node:os";
import { join } from "node:path";
import type { Proc } from "../tests/fixtures/harness.ts";
import { freePort, LOOPBACK, waitForPort } from "./ports.ts";
import { findProgram, startProgram, waitForLine } from "./programs.ts";
import { descendants } from "./proc_stats.ts";

/** A running sshd + ssh pair forwarding local ports. */
export interface SshTunnel {
  /** Local forwarding port per target port. */
  ports: Map<number, number>;
  /** The ssh client's pid. */
  sshPid: number;
  /** The pids of sshd: the listener and its session processes. */
  sshdPids(): number[];
  /** Notes for the report (for example that /run/sshd was created). */
  notes: string[];
  /** Stops ssh, then sshd, and removes the temp dir. */
  close(): Promise<void>;
}

/** Why the baseline cannot run here, or undefined when sshd, ssh and ssh-keygen are found. */
export function sshMissing(): string | undefined {
  const missing = ["sshd", "ssh", "ssh-keygen"].filter((p) => !findProgram(p));
  if (missing.length === 0) return undefined;
  return `${missing.join(", ")} not found (Debian: apt-get install openssh-server openssh-client)`;
}

async function keygen(path: string): Promise<void> {
  const out = await new Deno.Command(findProgram("ssh-keygen")!, {
    args: ["-q", "-t", "ed25519", "-N", "", "-C", "ztm-bench", "-f", path],
    stdin: "null",
  }).output();
  if (out.code !== 0) throw new Error(`ssh-keygen failed: ${new TextDecoder().decode(out.stderr)}`);
}

/**
 * Starts sshd and `ssh -N -L` forwarding a fresh local port to each of
 * `targetPorts` on 127.0.0.1; resolves once every forward accepts. Throws
 * with the programs' output if either fails to start (and cleans up).
 */
export async function startSshTunnel(targetPorts: number[]): Promise<SshTunnel> {
  const dir = await Deno.makeTempDir({ prefix: "ztm-bench-ssh-" });
  const notes: string[] = [];
  const procs: Proc[] = [];
  const close = async () => {
    for (const p of procs.reverse()) await p.stop(2_000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await keygen(join(dir, "host_key"));
    await keygen(join(dir, "client_key"));
    await Deno.copyFile(join(dir, "client_key.pub"), join(dir, "authorized_keys"));
    if (Deno.uid() === 0) {
      try {
        Deno.statSync("/run/sshd");
      } catch {
        Deno.mkdirSync("/run/sshd", { mode: 0o755 });
        notes.push(
          "created /run/sshd (sshd's privilege-separation directory) as its service would",
        );
      }
    }
    let sshd: Proc | undefined;
    let sshdPort = 0;
    for (let attempt = 0; attempt < 5 && !sshd; attempt++) {
      sshdPort = freePort();
      const proc = startProgram("sshd", findProgram("sshd")!, sshdArgs(dir, sshdPort));
      procs.push(proc);
      try {
        await waitForLine(proc, /Server listening on/);
        sshd = proc;
      } catch (err) {
        if (!/Address already in use/.test(proc.tail())) throw err; // another program took the port
        await proc.stop();
      }
    }
    if (!sshd) throw new Error("sshd found no free port in 5 attempts");
    const server = sshd;
    const ports = new Map(targetPorts.map((t) => [t, freePort()]));
    const forwards = [...ports].flatMap(([target, local]) => [
      "-L",
      `${LOOPBACK}:${local}:${LOOPBACK}:${target}`,
    ]);
    const ssh = startProgram("ssh", findProgram("ssh")!, [
      "-N",
      "-F",
      "/dev/null",
      "-i",
      join(dir, "client_key"),
      "-p",
      String(sshdPort),
      "-c",
      "aes128-gcm@openssh.com",
      ...[
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "ExitOnForwardFailure=yes",
        "Compression=no",
        "ControlPath=none",
        "LogLevel=ERROR",
      ].flatMap((o) => ["-o", o]),
      ...forwards,
      `${userInfo().username}@${LOOPBACK}`,
    ]);
    procs.push(ssh);
    const alive = () => {
      if (ssh.exited) throw new Error(`ssh exited:\n${ssh.tail()}\nsshd:\n${server.tail()}`);
    };
    for (const local of ports.values()) await waitForPort(local, 15_000, alive);
    const sshdPid = server.child.pid;
    return {
      ports,
      sshPid: ssh.child.pid,
      sshdPids: () => [sshdPid, ...descendants(sshdPid)],
      notes,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function sshdArgs(dir: string, port: number): string[] {
  const options = [
    `Port=${port}`,
    `ListenAddress=${LOOPBACK}`,
    `HostKey=${join(dir, "host_key")}`,
    `AuthorizedKeysFile=${join(dir, "authorized_keys")}`,
    "PidFile=none",
    "PubkeyAuthentication=yes",
    "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no",
    "PermitRootLogin=prohibit-password",
    "UsePAM=no",
    "StrictModes=no",
    "AllowTcpForwarding=local",
    `PermitOpen=${LOOPBACK}:*`,
    "X11Forwarding=no",
    "PrintMotd=no",
  ];
  return ["-D", "-e", "-f", "/dev/null", ...options.flatMap((o) => ["-o", o])];
}
