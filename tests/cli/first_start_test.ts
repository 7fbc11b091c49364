/**
 * First contact, `ztm start`: on a terminal it shows its summary with human
 * log lines (no JSON) before it, its hub certificate carries `--names` (by
 * default this machine's host name and addresses), and the join command it
 * prints for a second machine works as printed.
 */
import { join } from "node:path";
import { defaultHubNames } from "../../cli/start.ts";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { agentFlags, ztm } from "../fixtures/cli_helpers.ts";
import { eventually, Harness, rememberAgentToken, ROOT, startProc } from "../fixtures/harness.ts";
import { freePort } from "../fixtures/net_helpers.ts";

Deno.test("the hub of ztm start names this machine's host name and addresses by default", () => {
  const names = defaultHubNames();
  for (const n of ["localhost", "127.0.0.1", Deno.hostname()]) assert(names.includes(n), n);
  for (const i of Deno.networkInterfaces()) {
    if (!i.address.startsWith("fe80:")) assert(names.includes(i.address), i.address);
  }
});

Deno.test("ztm start on a terminal prints its summary and a join command a second machine runs as printed", async () => {
  await using h = new Harness();
  const dir = await h.tempDir("ztm-start-tty-");
  const hubPort = await freePort();
  const args = [
    Deno.execPath(),
    "run",
    "-A",
    join(ROOT, "cli/start.ts"),
    `--data-dir=${dir}`,
    "--ca-listen=127.0.0.1:0",
    `--hub-listen=127.0.0.2:${hubPort}`,
    "--data-listen=127.0.0.2:0",
    "--agent-listen=127.0.0.1:0",
    "--names=127.0.0.2",
  ];
  // A real pseudo-terminal: `script` (bsdutils) runs start with its stdout and stderr on a pty.
  const start = startProc("start-tty", "script", [
    "-qfec",
    args.map((a) => `'${a}'`).join(" "),
    "/dev/null",
  ]);
  try {
    const command = await eventually(
      () => start.raw.find((l) => l.trim().startsWith("ztm join local ")),
      30_000,
      "the second machine's join command",
    );
    const lines = start.raw.map((l) => l.replace(/\r$/, ""));
    const summary = lines.findIndex((l) => l === "ztm is running:");
    assert(summary > 0, start.tail());
    const before = lines.slice(0, summary).filter((l) => l.trim() !== "");
    assert(
      before.length > 0 && before.every((l) => /^\d\d:\d\d:\d\d\.\d{3} (INFO|WARN) /.test(l)),
      before.join("\n"),
    );
    assert(
      lines.some((l) => l.includes("its certificate names localhost, 127.0.0.1, 127.0.0.2")),
      start.tail(),
    );
    const copy = lines.find((l) => l.startsWith("To add a second machine:"))!;
    assert(copy.includes(`${dir}/ca.crt, ${dir}/root.crt, ${dir}/root.key`), copy);

    // The second machine: its own agent, the three files copied into its working directory,
    // and the command exactly as printed.
    const second = await h.tempDir("ztm-second-");
    for (const f of ["ca.crt", "root.crt", "root.key"]) {
      Deno.copyFileSync(join(dir, f), join(second, f));
    }
    const agent = await h.startAgent({ name: "second" });
    const words = command.trim().split(/\s+/).slice(1);
    assertEquals(words.slice(0, 3), ["join", "local", `--hub=127.0.0.2:${hubPort}`]);
    const out = await ztm([...words, ...agentFlags(agent)], { cwd: second });
    assertEquals(out.code, 0, out.stderr + out.stdout);
    assert(out.stdout.includes(`connected to 127.0.0.2:${hubPort}`), out.stdout);
    rememberAgentToken(agent.url, agent.token);
    const endpoints = await eventually(
      async () => {
        const res = await ztm(["get", "endpoints", "--json", ...agentFlags(agent)]);
        const body = JSON.parse(res.stdout);
        return body.items.length === 2 && body.items.every((e: { online: boolean }) => e.online)
          ? body
          : undefined;
      },
      20_000,
      "both machines online",
    );
    assertEquals(endpoints.items.length, 2);
  } finally {
    await start.stop();
  }
});
