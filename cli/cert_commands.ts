/**
 * `ztm cert new|revoke|list`: certificates from the mesh CA's REST API, so
 * that a user's three files (`NAME.key`, `NAME.crt`, `ca.crt`) land where
 * `ztm join` wants them. The private key is written `0600` and never printed.
 */
import { join } from "node:path";
import { errorFromResponse, ServiceUnavailable } from "@ztm/shared/errors";
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import { type Flags, type FlagSpec, UsageError } from "@ztm/shared/flags";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import type { Command } from "./command.ts";
import { printJson } from "./connect.ts";
import { formatTable } from "./table.ts";

/** A certificate as the CA lists it (`GET /api/certificates`). */
interface CertificateSummary {
  name: string;
  role: string;
  serial: string;
  notAfter: string;
  revoked: boolean;
}

const CA_FLAGS: FlagSpec[] = [
  {
    name: "ca-url",
    kind: "string",
    default: "http://127.0.0.1:9999",
    help: "the CA's API (http://HOST:PORT or HOST:PORT)",
  },
  {
    name: "ca-token-file",
    kind: "path",
    optional: true,
    help: "the CA's token file, needed when the CA listens beyond loopback",
  },
];

const NAME_ARG = { name: "NAME", help: "the user's name (1 to 64 of A-Z a-z 0-9 . _ -)" };

function checkedName(flags: Flags): string {
  const name = flags.arg("NAME")!;
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(
      `Bad NAME "${name}": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -`,
    );
  }
  return name;
}

/** Calls the CA; returns the answer's text, or throws the error class of its status. */
async function callCa(flags: Flags, method: string, path: string): Promise<string> {
  const raw = flags.string("ca-url")!;
  const base = (/^https?:\/\//.test(raw) ? raw : `http://${raw}`).replace(/\/+$/, "");
  const tokenFile = flags.path("ca-token-file");
  let headers: Record<string, string> = {};
  if (tokenFile !== undefined) {
    try {
      headers = { authorization: `Bearer ${Deno.readTextFileSync(tokenFile).trim()}` };
    } catch (err) {
      throw new Error(`Cannot read the --ca-token-file "${tokenFile}": ${(err as Error).message}`);
    }
  }
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, headers });
  } catch (err) {
    throw new ServiceUnavailable(
      "ca_unreachable",
      `Cannot reach the CA at ${base}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const text = await res.text();
  if (!res.ok) throw errorFromResponse(res.status, text);
  return text;
}

/** `ztm cert new`. */
export const CERT_NEW: Command = {
  spec: {
    name: "ztm cert new",
    summary:
      "Has the CA make a key and certificate for a user; writes NAME.key (0600), NAME.crt and ca.crt.",
    args: [NAME_ARG],
    flags: [
      { name: "dir", kind: "path", default: ".", help: "where to write the files" },
      ...CA_FLAGS,
    ],
    examples: ["ztm cert new alice", "ztm cert new bob --ca-url=127.0.0.1:9999 --dir=~/ztm"],
  },
  async run(flags) {
    const name = checkedName(flags);
    const dir = flags.path("dir")!;
    const keyFile = join(dir, `${name}.key`);
    const certFile = join(dir, `${name}.crt`);
    const caFile = join(dir, "ca.crt");
    for (const file of [keyFile, certFile]) {
      if (readTextIfExists(file) !== undefined) {
        throw new Error(`${file} already exists; move it away or choose another --dir`);
      }
    }
    const caPem = await callCa(flags, "GET", "/api/certificates/ca");
    const oldCa = readTextIfExists(caFile);
    if (oldCa !== undefined && oldCa.trim() !== caPem.trim()) {
      throw new Error(`${caFile} holds another CA's certificate; choose another --dir`);
    }
    const privateKey = await callCa(flags, "POST", `/api/certificates/${name}`);
    writeSecretFile(keyFile, privateKey);
    Deno.writeTextFileSync(certFile, await callCa(flags, "GET", `/api/certificates/${name}`));
    if (oldCa === undefined) Deno.writeTextFileSync(caFile, caPem);
    console.log(`Wrote ${keyFile} (0600), ${certFile} and ${caFile}`);
  },
};

/** `ztm cert revoke`. */
export const CERT_REVOKE: Command = {
  spec: {
    name: "ztm cert revoke",
    summary: "Revokes a user's certificate: hubs cut its sessions and agents refuse it.",
    args: [NAME_ARG],
    flags: [...CA_FLAGS, { name: "json", kind: "boolean", help: "print the CA's JSON answer" }],
    examples: ["ztm cert revoke alice"],
  },
  async run(flags) {
    const name = checkedName(flags);
    const answer = JSON.parse(await callCa(flags, "DELETE", `/api/certificates/${name}`));
    if (flags.boolean("json")) return printJson(answer);
    const revoked = answer.revoked as CertificateSummary;
    console.log(`Revoked the certificate of ${revoked.name} (serial ${revoked.serial})`);
  },
};

/** `ztm cert list`. */
export const CERT_LIST: Command = {
  spec: {
    name: "ztm cert list",
    summary: "Lists the certificates the CA has issued.",
    flags: [...CA_FLAGS, { name: "json", kind: "boolean", help: "print the CA's JSON answer" }],
    examples: ["ztm cert list --ca-url=127.0.0.1:9999"],
  },
  async run(flags) {
    const list = JSON.parse(
      await callCa(flags, "GET", "/api/certificates"),
    ) as CertificateSummary[];
    if (flags.boolean("json")) return printJson(list);
    console.log(formatTable(
      ["NAME", "ROLE", "SERIAL", "EXPIRES", "STATE"],
      list.map((c) => [c.name, c.role, c.serial, c.notAfter, c.revoked ? "revoked" : "valid"]),
      "The CA has issued no certificates.",
    ));
  },
};
