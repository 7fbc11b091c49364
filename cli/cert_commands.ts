/**
 * `ztm cert new|revoke|list`: certificates from the mesh CA's REST API, so
 * that a user's three files (`NAME.key`, `NAME.crt`, `ca.crt`) land where
 * `ztm join` wants them. The private key is written `0600` and never printed.
 */
import { cliError } from "./errors.ts";
import { join } from "node:path";
import { errorFromResponse } from "@ztm/shared/errors";
import { readTextIfExists, writeSecretFile } from "@ztm/shared/files";
import { type Flags, type FlagSpec, UsageError } from "@ztm/shared/flags";
import { isEndpointName } from "@ztm/shared/endpoint_id";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import type { Command } from "./command.ts";
import { printJson } from "./connect.ts";
import { formatTable } from "./table.ts";

/** A certificate as the CA lists it (`GET /api/certificates`). */
interface CertificateSummary {
  name: string;
  role: string;
  endpoint?: string | null;
  serial: string;
  notAfter: string;
  revoked: boolean;
  superseded?: boolean;
}

/** The CA flags, for the other commands that talk to the CA (`ztm invite`). */
export const CA_FLAGS: FlagSpec[] = [
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

const ENDPOINT_FLAG: FlagSpec = {
  name: "endpoint",
  kind: "string",
  optional: true,
  help: "the device (endpoint name) the certificate is for: one certificate per device",
};

function checkedEndpoint(flags: Flags): string | undefined {
  const endpoint = flags.string("endpoint");
  if (endpoint !== undefined && !isEndpointName(endpoint)) {
    throw new UsageError(
      `Bad --endpoint "${endpoint}": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -`,
    );
  }
  return endpoint;
}

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
export async function callCa(
  flags: Flags,
  method: string,
  path: string,
  body?: string,
): Promise<string> {
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
    res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
      body,
    });
  } catch (err) {
    throw cliError(
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
      { ...ENDPOINT_FLAG, help: ENDPOINT_FLAG.help + " (files NAME-ENDPOINT.key/.crt)" },
      ...CA_FLAGS,
    ],
    examples: [
      "ztm cert new alice",
      "ztm cert new alice --endpoint=laptop",
      "ztm cert new bob --ca-url=127.0.0.1:9999 --dir=~/ztm",
    ],
  },
  async run(flags) {
    const name = checkedName(flags);
    const endpoint = checkedEndpoint(flags);
    const dir = flags.path("dir")!;
    const base = endpoint ? `${name}-${endpoint}` : name;
    const route = endpoint
      ? `/api/certificates/${name}/endpoints/${encodeURIComponent(endpoint)}`
      : `/api/certificates/${name}`;
    const keyFile = join(dir, `${base}.key`);
    const certFile = join(dir, `${base}.crt`);
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
    const privateKey = await callCa(flags, "POST", route);
    writeSecretFile(keyFile, privateKey);
    Deno.writeTextFileSync(certFile, await callCa(flags, "GET", route));
    if (oldCa === undefined) Deno.writeTextFileSync(caFile, caPem);
    console.log(`Wrote ${keyFile} (0600), ${certFile} and ${caFile}`);
  },
};

/** `ztm cert revoke`. */
export const CERT_REVOKE: Command = {
  spec: {
    name: "ztm cert revoke",
    summary:
      "Revokes a user's certificates (or one device's, or one serial's): hubs cut their sessions and agents refuse them.",
    args: [NAME_ARG],
    flags: [
      { ...ENDPOINT_FLAG, help: "revoke only this device's certificates; the user's others stay" },
      {
        name: "serial",
        kind: "string",
        optional: true,
        help: "revoke the certificate with this hex serial (and its device's renewals) only",
      },
      ...CA_FLAGS,
      { name: "json", kind: "boolean", help: "print the CA's JSON answer" },
    ],
    examples: [
      "ztm cert revoke alice",
      "ztm cert revoke alice --endpoint=laptop",
      "ztm cert revoke alice --serial=5f3a…",
    ],
  },
  async run(flags) {
    const name = checkedName(flags);
    const endpoint = checkedEndpoint(flags);
    const serial = flags.string("serial");
    if (serial !== undefined && !/^[0-9a-fA-F]{1,64}$/.test(serial)) {
      throw new UsageError(`Bad --serial "${serial}": the certificate's hex serial number`);
    }
    if (serial !== undefined && endpoint !== undefined) {
      throw new UsageError("Give --endpoint or --serial, not both");
    }
    let list: CertificateSummary[];
    let answer: unknown;
    if (serial !== undefined) {
      const all = JSON.parse(
        await callCa(flags, "GET", `/api/certificates/${name}/endpoints`),
      ) as CertificateSummary[];
      const wanted = serial.toLowerCase().replace(/^0+(?=.)/, "");
      if (!all.some((c) => c.serial === wanted)) {
        throw new Error(`${name} has no certificate with serial ${serial}`);
      }
      answer = JSON.parse(await callCa(flags, "DELETE", `/api/serials/${wanted}`));
      list = (answer as { revoked: CertificateSummary[] }).revoked;
    } else if (endpoint !== undefined) {
      answer = JSON.parse(
        await callCa(
          flags,
          "DELETE",
          `/api/certificates/${name}/endpoints/${encodeURIComponent(endpoint)}`,
        ),
      );
      list = (answer as { revoked: CertificateSummary[] }).revoked;
    } else {
      answer = JSON.parse(await callCa(flags, "DELETE", `/api/certificates/${name}`));
      const a = answer as { revoked: CertificateSummary; all?: CertificateSummary[] };
      list = a.all ?? [a.revoked];
    }
    if (flags.boolean("json")) return printJson(answer);
    for (const c of list) {
      console.log(
        `Revoked the certificate of ${c.name}${
          c.endpoint ? ` for endpoint ${c.endpoint}` : ""
        } (serial ${c.serial})`,
      );
    }
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
    const now = Date.now();
    console.log(formatTable(
      ["NAME", "ROLE", "ENDPOINT", "SERIAL", "EXPIRES", "STATE"],
      list.map((c) => [
        c.name,
        c.role,
        c.endpoint ?? "",
        c.serial,
        c.notAfter,
        c.revoked
          ? "revoked"
          : Date.parse(c.notAfter) <= now
          ? "expired"
          : c.superseded
          ? "renewed"
          : "valid",
      ]),
      "The CA has issued no certificates.",
    ));
  },
};

/** The CA's own certificate as `GET /api/status` shows it. */
interface CaStatus {
  ca: {
    subject: string;
    fingerprint: string;
    notAfter: string;
    daysLeft: number;
    warning: string | null;
  };
}

/** `ztm cert status`. */
export const CERT_STATUS: Command = {
  spec: {
    name: "ztm cert status",
    summary:
      "Shows the CA's own certificate: its name, fingerprint and end (warns a year before it).",
    flags: [...CA_FLAGS, { name: "json", kind: "boolean", help: "print the CA's JSON answer" }],
    examples: ["ztm cert status --ca-url=127.0.0.1:9999"],
  },
  async run(flags) {
    const status = JSON.parse(await callCa(flags, "GET", "/api/status")) as CaStatus;
    if (flags.boolean("json")) return printJson(status);
    const { ca } = status;
    const lines = [
      `CA ${ca.subject}`,
      `  fingerprint  ${ca.fingerprint}`,
      `  valid until  ${ca.notAfter} (${
        ca.daysLeft < 0 ? "expired" : `in ${ca.daysLeft} day${ca.daysLeft === 1 ? "" : "s"}`
      })`,
    ];
    if (ca.warning) lines.push(`CA EXPIRING: ${ca.warning}`);
    console.log(lines.join("\n"));
  },
};
