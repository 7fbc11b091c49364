/**
 * `ztm invite USER` and `ztm invites list|revoke`: invites from the mesh CA
 * (run on the CA's machine). An invite is one printable string, shown with a
 * QR code for a phone camera or another terminal; `ztm join MESH
 * --invite=STRING` on the new device uses it.
 */
import qrcode from "qrcode-generator";
import { type Flags, UsageError } from "@ztm/shared/flags";
import { NAME_PATTERN } from "@ztm/shared/protocol";
import { CA_FLAGS, callCa } from "./cert_commands.ts";
import type { Command } from "./command.ts";
import { printJson } from "./connect.ts";
import { formatTable } from "./table.ts";

/** An invite as the CA lists it. */
interface InviteSummary {
  id: string;
  user: string;
  expiresAt: string;
  usesLeft: number;
  uses: number;
  state: string;
  hubs: { control: string[]; enroll: string[] };
}

/**
 * `text` as a QR code drawn with half blocks (two rows of modules per line), dark on light
 * with the four-module quiet zone scanners want.
 */
export function terminalQr(text: string): string {
  const qr = qrcode(0, "L");
  qr.addData(text, "Byte");
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  const dark = (r: number, c: number) => r >= 0 && c >= 0 && r < n && c < n && qr.isDark(r, c);
  const lines: string[] = [];
  for (let r = -quiet; r < n + quiet; r += 2) {
    let line = "";
    for (let c = -quiet; c < n + quiet; c++) {
      const top = dark(r, c);
      const bottom = dark(r + 1, c);
      // Light is drawn, dark is blank: terminals are mostly dark-on-light inverted.
      line += top && bottom ? " " : top ? "▄" : bottom ? "▀" : "█";
    }
    lines.push(line);
  }
  return lines.join("\n");
}

function durationFlag(flags: Flags, name: string): string | undefined {
  const v = flags.string(name);
  if (v !== undefined && !/^\d{1,7}[smhd]$/.test(v)) {
    throw new UsageError(`Bad --${name} "${v}": a number with s, m, h or d (90s, 15m, 1h, 7d)`);
  }
  return v;
}

/** `ztm invite USER`. */
export const INVITE: Command = {
  spec: {
    name: "ztm invite",
    summary:
      "Makes an invite for USER (on the CA's machine): one string that lets a new device join with a key made there.",
    args: [{ name: "USER", help: "the user the device will belong to" }],
    flags: [
      {
        name: "expires",
        kind: "string",
        default: "1h",
        help: "how long the invite works: a number with s, m, h or d (up to 30d)",
      },
      { name: "uses", kind: "integer", default: "1", help: "how many devices may use it (1–100)" },
      {
        name: "hub",
        kind: "string",
        optional: true,
        help:
          "HOST:PORT[,…] of the hubs the device dials (default: the hubs that announced themselves to the CA)",
      },
      {
        name: "enroll",
        kind: "string",
        optional: true,
        help: "HOST:PORT[,…] of the hubs' enrollment ports (default: announced, or hub port + 2)",
      },
      { name: "no-qr", kind: "boolean", help: "print the string only, without the QR code" },
      ...CA_FLAGS,
      { name: "json", kind: "boolean", help: "print the CA's JSON answer" },
    ],
    examples: [
      "ztm invite alice",
      "ztm invite alice --expires=1d --uses=2 --hub=hub.example.com:8888",
    ],
  },
  async run(flags) {
    const user = flags.arg("USER")!;
    if (!NAME_PATTERN.test(user)) {
      throw new UsageError(
        `Bad USER "${user}": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -`,
      );
    }
    const list = (name: string) =>
      flags.string(name)?.split(",").map((s) => s.trim()).filter(Boolean);
    const body = {
      user,
      expires: durationFlag(flags, "expires"),
      uses: flags.integer("uses"),
      hubs: list("hub"),
      enroll: list("enroll"),
    };
    const answer = JSON.parse(
      await callCa(flags, "POST", "/api/invites", JSON.stringify(body)),
    ) as InviteSummary & { invite: string };
    if (flags.boolean("json")) return printJson(answer);
    if (!flags.boolean("no-qr")) console.log(terminalQr(answer.invite) + "\n");
    console.log(answer.invite);
    console.log(
      `\nInvite ${answer.id} for ${answer.user}: ${answer.usesLeft} use${
        answer.usesLeft === 1 ? "" : "s"
      }, until ${answer.expiresAt}; hubs ${answer.hubs.control.join(", ")}.`,
    );
    console.log(
      `On the new device: ztm join MESH --invite=${
        answer.invite.slice(0, 24)
      }…  (the whole string)`,
    );
    console.log("Keep it secret until it is used: anyone holding it can join as that user.");
  },
};

/** `ztm invites list`. */
export const INVITES_LIST: Command = {
  spec: {
    name: "ztm invites list",
    summary: "Lists the CA's invites with their state (never their secret).",
    flags: [...CA_FLAGS, { name: "json", kind: "boolean", help: "print the CA's JSON answer" }],
    examples: ["ztm invites list"],
  },
  async run(flags) {
    const list = JSON.parse(await callCa(flags, "GET", "/api/invites")) as InviteSummary[];
    if (flags.boolean("json")) return printJson(list);
    console.log(formatTable(
      ["ID", "USER", "STATE", "USES", "LEFT", "EXPIRES"],
      list.map((i) => [i.id, i.user, i.state, String(i.uses), String(i.usesLeft), i.expiresAt]),
      "The CA has made no invites.",
    ));
  },
};

/** `ztm invites revoke ID`. */
export const INVITES_REVOKE: Command = {
  spec: {
    name: "ztm invites revoke",
    summary: "Revokes an invite: the uses it has left cannot be used.",
    args: [{ name: "ID", help: "the invite's id (ztm invites list)" }],
    flags: [...CA_FLAGS, { name: "json", kind: "boolean", help: "print the CA's JSON answer" }],
    examples: ["ztm invites revoke 3f2a9c0d11e4b7a8"],
  },
  async run(flags) {
    const id = flags.arg("ID")!;
    if (!/^[0-9a-f]{16}$/.test(id)) {
      throw new UsageError(`Bad ID "${id}": an invite id is 16 hex digits (ztm invites list)`);
    }
    const answer = JSON.parse(await callCa(flags, "DELETE", `/api/invites/${id}`));
    if (flags.boolean("json")) return printJson(answer);
    console.log(`Revoked invite ${id} of ${answer.revoked.user}`);
  },
};
