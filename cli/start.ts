/**
 * `ztm start`: the whole mesh on one machine — a CA, a hub and an agent —
 * with a local `root` user joined to a mesh named `local`. State lives under
 * one data directory, so a second run picks up where the first left off.
 *
 * @module
 */
import { join } from "node:path";
import { type InviteMaker, type MadeInvite, startAgent } from "@ztm/agent";
import { startCa } from "@ztm/ca";
import { startHub } from "@ztm/hub";
import { errorFromResponse } from "@ztm/shared/errors";
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import {
  applyLogFlags,
  type CommandSpec,
  formatHostPort,
  type HostPort,
  isLoopbackHost,
  LOG_FLAGS,
  parseCommandLine,
} from "@ztm/shared/flags";
import { Logger } from "@ztm/shared/log";
import { runUntilSignal } from "@ztm/shared/run";
import { displayPath, lockState } from "@ztm/shared/state_lock";

/** Flags of `ztm start`. */
export const START_COMMAND: CommandSpec = {
  name: "ztm start",
  summary: "Runs a CA, a hub and an agent on this machine, joined to a local mesh as user root.",
  flags: [
    { name: "data-dir", kind: "path", default: "~/.ztm", help: "where all state is kept" },
    { name: "mesh", kind: "string", default: "local", help: "name of the mesh the agent joins" },
    {
      name: "ca-listen",
      kind: "address",
      default: "127.0.0.1:9999",
      help: "address of the CA's API",
    },
    { name: "hub-listen", kind: "address", default: "0.0.0.0:8888", help: "address agents dial" },
    {
      name: "names",
      kind: "addresses",
      optional: true,
      help:
        "host names and addresses other machines dial the hub by; they go into its certificate " +
        "(default: this machine's host name and addresses, plus localhost and 127.0.0.1)",
    },
    {
      name: "data-listen",
      kind: "address",
      optional: true,
      help: "the hub's data port (default: the hub's address, port + 1)",
    },
    {
      name: "agent-listen",
      kind: "address",
      default: "127.0.0.1:7777",
      help: "address of the agent's API and dashboard",
    },
    ...LOG_FLAGS,
  ],
  examples: [
    "ztm start",
    "ztm start --names=hub.example.com,203.0.113.7",
    "ztm start --data-dir=/tmp/ztm --agent-listen=127.0.0.1:7000",
  ],
};

/**
 * The names the hub's certificate carries by default: loopback, this machine's
 * host name, and every address of its interfaces (IPv6 link-local ones need a
 * zone no certificate can name, so they are left out).
 */
export function defaultHubNames(): string[] {
  const names = ["localhost", "127.0.0.1"];
  try {
    names.push(Deno.hostname());
  } catch { /* no host name to add */ }
  try {
    for (const i of Deno.networkInterfaces()) {
      if (!/^fe80:/i.test(i.address)) names.push(i.address);
    }
  } catch { /* no interfaces to add */ }
  return [...new Set(names.filter((n) => /^[A-Za-z0-9.:-]+$/.test(n)))];
}

/** The address this machine's own agent dials: the hub's listen host, or localhost for a wildcard. */
function localHubAddress(listen: HostPort, port: number): string {
  const wildcard = listen.hostname === "0.0.0.0" || listen.hostname === "::";
  return formatHostPort({ hostname: wildcard ? "localhost" : listen.hostname, port });
}

/** Issues root's certificate once and keeps it (0600) under `dir`; later runs reuse the files. */
async function rootCredentials(
  caUrl: string,
  dir: string,
): Promise<{ certificate: string; privateKey: string }> {
  const keyFile = join(dir, "root.key");
  const certFile = join(dir, "root.crt");
  let privateKey = readTextIfExists(keyFile);
  let certificate = readTextIfExists(certFile);
  if (privateKey && certificate) return { certificate, privateKey };
  const res = await fetch(`${caUrl}/api/certificates/root`, { method: "POST" });
  privateKey = await res.text();
  if (res.status !== 201) {
    throw new Error(`The CA would not issue root's certificate: ${privateKey.trim()}`);
  }
  writeSecretFile(keyFile, privateKey);
  certificate = await (await fetch(`${caUrl}/api/certificates/root`)).text();
  writeSecretFile(certFile, certificate);
  return { certificate, privateKey };
}

/**
 * Invites for the dashboard, made by the CA this process runs (the agent's
 * API token and the CA's token are files of one user in one data directory,
 * so the agent hands out no power its callers lack: `agent/invite_maker.ts`).
 */
function caInviteMaker(
  ca: { url: string; caCertificatePem: string },
  tokenFile: string,
): InviteMaker {
  return {
    caCertificatePem: ca.caCertificatePem,
    async create(req) {
      const res = await fetch(`${ca.url}/api/invites`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${Deno.readTextFileSync(tokenFile).trim()}`,
        },
        body: JSON.stringify(req),
      });
      const text = await res.text();
      if (res.status !== 201) throw errorFromResponse(res.status, text);
      const made = JSON.parse(text) as MadeInvite;
      return {
        invite: made.invite,
        id: made.id,
        user: made.user,
        expiresAt: made.expiresAt,
        usesLeft: made.usesLeft,
        hubs: made.hubs,
      };
    },
  };
}

/**
 * Runs `ztm start` with `args`: parses the flags (exiting 2 on a bad one), starts
 * it, and stops it on SIGINT or SIGTERM. Exits 1 if it cannot start.
 */
export async function main(args: string[]): Promise<void> {
  const flags = parseCommandLine(START_COMMAND, args);
  applyLogFlags(flags);
  const dir = flags.path("data-dir")!;
  const mesh = flags.string("mesh")!;
  const given = flags.string("names") === undefined
    ? undefined
    : flags.addresses("names").map((a) => a.hostname);
  const names = given ? [...new Set(["localhost", "127.0.0.1", ...given])] : defaultHubNames();
  // What a second machine dials: the first name given, else this machine's first non-loopback one.
  const remote = given?.[0] ?? names.find((n) => !isLoopbackHost(n)) ?? "THIS-MACHINE";
  const log = new Logger("start");
  await runUntilSignal(log, async () => {
    lockState(join(dir, "ca.db"), "CA", "--data-dir");
    lockState(join(dir, "agent.db"), "agent", "--data-dir");
    const ca = await startCa({
      listen: flags.address("ca-listen"),
      database: join(dir, "ca.db"),
      log: new Logger("ca"),
    });
    writeSecretFile(join(dir, "ca.crt"), ca.caCertificatePem);
    const hubListen = flags.address("hub-listen");
    const dataListen = flags.string("data-listen") === undefined
      ? { hostname: hubListen.hostname, port: hubListen.port && hubListen.port + 1 }
      : flags.address("data-listen");
    const hub = await startHub({
      caUrl: ca.url,
      listen: hubListen,
      dataListen,
      hosts: names,
      dataDir: join(dir, "hub"),
      caTokenFile: join(dir, "ca.db.token"),
      log: new Logger("hub"),
      enrollListen: "auto",
      advertise: [{ hostname: remote, port: 0 }],
    });
    const agent = await startAgent({
      listen: flags.address("agent-listen"),
      database: join(dir, "agent.db"),
      log: new Logger("agent"),
      invites: caInviteMaker(ca, join(dir, "ca.db.token")),
    });
    if (!agent.runtimes.has(mesh)) {
      const root = await rootCredentials(ca.url, dir);
      const res = await fetch(`${agent.url}/api/meshes/${mesh}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${Deno.readTextFileSync(agent.tokenFile).trim()}`,
        },
        body: JSON.stringify({
          ca: ca.caCertificatePem,
          agent: { certificate: root.certificate, privateKey: root.privateKey },
          bootstraps: [localHubAddress(hubListen, hub.addr.port)],
        }),
      });
      if (res.status !== 201) {
        throw new Error(`Joining mesh "${mesh}" failed: ${(await res.text()).trim()}`);
      }
      await res.body?.cancel();
      log.info("mesh joined", { mesh, user: "root" });
    }
    const files = ["ca.crt", "root.crt", "root.key"].map((f) => displayPath(join(dir, f)));
    console.log([
      "",
      "ztm is running:",
      `  CA         ${ca.url}   (CA certificate: ${join(dir, "ca.crt")})`,
      `  hub        ${formatHostPort(hub.addr)}   (its certificate names ${names.join(", ")})`,
      `  agent API  ${agent.url}   (mesh "${mesh}", user root)`,
      `  dashboard  ${agent.loginUrl()}   (works once)`,
      `  API token  ${agent.tokenFile}`,
      `  root's certificate and key: ${join(dir, "root.crt")}, ${join(dir, "root.key")}`,
      `  state: ${dir}   — stop with Ctrl-C`,
      "",
      `To add a second machine: let it reach TCP ${hub.addr.port} and ${
        dataListen.port || "the data port"
      } here, copy ${files.join(", ")}`,
      "to it (keep root.key private: it is root's key), and run there:",
      `  ztm agent &`,
      `  ztm join ${mesh} --hub=${
        formatHostPort({ hostname: remote, port: hub.addr.port })
      } --ca=ca.crt --cert=root.crt --key=root.key`,
      `(another user instead of root: ztm cert new NAME --ca-url=${ca.url} makes NAME.crt and NAME.key)`,
      "",
    ].join("\n"));
    return {
      async close() {
        await agent.close();
        await hub.close();
        await ca.close();
      },
    };
  });
}

if (import.meta.main) await main(Deno.args);
