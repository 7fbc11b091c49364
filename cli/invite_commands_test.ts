/**
 * `ztm invite` and `ztm invites list|revoke` against a real CA in this
 * process, and the terminal's QR code read back by a QR decoder (jsQR).
 */
import assert from "node:assert/strict";
import { UsageError } from "@ztm/shared/flags";
import { INVITE, INVITES_LIST, INVITES_REVOKE, terminalQr } from "./invite_commands.ts";
import { runCommand, startLocalCa } from "./_fixture.ts";
import { readQrModules, terminalQrModules } from "../tests/fixtures/qr_read.ts";

/** Decodes a QR code drawn by `terminalQr`; null when unreadable. */
function readTerminalQr(drawing: string): string | null {
  return readQrModules(terminalQrModules(drawing));
}

Deno.test("terminalQr draws a code a QR reader decodes to the text, inside a light quiet zone", () => {
  const text = "ztm1:" + "A".repeat(300);
  const drawing = terminalQr(text);
  assert.equal(readTerminalQr(drawing), text);
  const lines = drawing.split("\n");
  assert.ok(lines.every((l) => l.length === lines[0].length));
  // Four modules of light on every side: two full lines at the top, four columns at each edge.
  assert.match(lines[0] + lines[1], /^█+$/);
  assert.ok(lines.every((l) => l.startsWith("████") && l.endsWith("████")));
  assert.notEqual(readTerminalQr(terminalQr("other")), text);
});

Deno.test("ztm invite refuses a bad USER or --expires before it asks the CA", async () => {
  const nowhere = "--ca-url=127.0.0.1:1";
  await assert.rejects(
    runCommand(INVITE, ["al ice", nowhere]),
    new UsageError('Bad USER "al ice": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -'),
  );
  await assert.rejects(
    runCommand(INVITE, ["alice", "--expires=2w", nowhere]),
    new UsageError('Bad --expires "2w": a number with s, m, h or d (90s, 15m, 1h, 7d)'),
  );
  await assert.rejects(
    runCommand(INVITES_REVOKE, ["XYZ", nowhere]),
    new UsageError('Bad ID "XYZ": an invite id is 16 hex digits (ztm invites list)'),
  );
});

Deno.test("ztm invite prints the string, its QR code and its terms; invites list and revoke follow it", async () => {
  await using local = await startLocalCa();
  const ca = local.caFlags;
  const made = await runCommand(INVITE, [
    "alice",
    "--expires=1d",
    "--uses=2",
    "--hub=hub.example.com:8888, 192.0.2.7:8888",
    ...ca,
  ]);
  const lines = made.split("\n");
  const at = lines.findIndex((l) => l.startsWith("ztm"));
  const invite = lines[at];
  assert.equal(readTerminalQr(lines.slice(0, at - 1).join("\n")), invite);
  const terms = /^Invite ([0-9a-f]{16}) for alice: 2 uses, until (\S+); hubs (.+)\.$/.exec(
    lines[at + 2],
  );
  assert.ok(terms, lines[at + 2]);
  assert.equal(terms[3], "hub.example.com:8888, 192.0.2.7:8888");
  const hours = (Date.parse(terms[2]) - Date.now()) / 3_600_000;
  assert.ok(hours > 23 && hours <= 24, terms[2]);
  assert.equal(
    lines[at + 3],
    `On the new device: ztm join MESH --invite=${invite.slice(0, 24)}…  (the whole string)`,
  );

  const plain = await runCommand(INVITE, ["bob", "--no-qr", "--hub=127.0.0.1:8888", ...ca]);
  assert.match(plain.split("\n")[0], /^ztm/);
  const json = JSON.parse(await runCommand(INVITE, ["carol", "--json", "--hub=h:1", ...ca]));
  assert.equal(json.user, "carol");
  assert.equal(json.usesLeft, 1);

  const id = terms[1];
  const listed = (await runCommand(INVITES_LIST, ca)).split("\n");
  assert.deepEqual(listed[0].split(/ {2,}/), ["ID", "USER", "STATE", "USES", "LEFT", "EXPIRES"]);
  assert.equal(listed.length, 4);
  const row = listed.find((l) => l.startsWith(id))!.split(/ {2,}/);
  assert.deepEqual(row.slice(0, 5), [id, "alice", "active", "0", "2"]);
  assert.ok(!listed.join("\n").includes(invite), "the list never shows the secret");

  assert.equal(await runCommand(INVITES_REVOKE, [id, ...ca]), `Revoked invite ${id} of alice`);
  const after = (await runCommand(INVITES_LIST, ca)).split("\n");
  assert.equal(after.find((l) => l.startsWith(id))!.split(/ {2,}/)[2], "revoked");
});
