/**
 * `ztm agent`'s flags: `--udp-sessions`, the old spelling of `--udp-flows`,
 * still sets it on the command line and as a config key, so service files
 * and config files written before the rename keep working.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseFlags, usage } from "@ztm/shared/flags";
import { AGENT_COMMAND } from "./main.ts";

/** The agent's `--udp-flows` as `args` set it. */
function udpFlows(args: string[]): number {
  const flags = parseFlags(AGENT_COMMAND, args);
  assert.ok(typeof flags === "object");
  return flags.integer("udp-flows");
}

Deno.test("ztm agent reads --udp-sessions as --udp-flows, on the command line and in a config file", () => {
  assert.equal(udpFlows([]), 256);
  assert.equal(udpFlows(["--udp-flows=9"]), 9);
  assert.equal(udpFlows(["--udp-sessions=7"]), 7);
  assert.equal(udpFlows(["--udp-sessions", "8"]), 8);
  assert.match(usage(AGENT_COMMAND), /--udp-sessions=INTEGER +old spelling of --udp-flows/);
  const dir = Deno.makeTempDirSync({ prefix: "ztm-agent-flags-" });
  try {
    const path = join(dir, "agent.toml");
    Deno.writeTextFileSync(path, "[agent]\nudp-sessions = 11\n");
    assert.equal(udpFlows([`--config=${path}`]), 11);
    Deno.writeTextFileSync(path, "[agent]\nudp_sessions = 12\n");
    assert.equal(udpFlows([`--config=${path}`]), 12);
    // The command line still wins over the file, whichever spelling each uses.
    assert.equal(udpFlows([`--config=${path}`, "--udp-flows=13"]), 13);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
