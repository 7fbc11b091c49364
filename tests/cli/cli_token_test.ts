/**
 * Where `ztm` finds the agent's API token: `--api-token-file`, else
 * `$ZTM_API_TOKEN`, else `~/ztm.db.token` (what `ztm agent` makes by default).
 */
import { join } from "node:path";
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { ztm } from "../fixtures/cli_helpers.ts";
import { Harness } from "../fixtures/harness.ts";

Deno.test("ztm reads the API token from --api-token-file, then ZTM_API_TOKEN, then ~/ztm.db.token", async () => {
  await using h = new Harness();
  const agent = await h.startAgent();
  const at = `--agent=127.0.0.1:${agent.port}`;
  const home = await h.tempDir("ztm-cli-home-");
  Deno.writeTextFileSync(join(home, "ztm.db.token"), `${agent.token}\n`);
  const byHome = await ztm(["get", "meshes", at], { home });
  assertEquals([byHome.code, byHome.stdout], [0, "No meshes joined; see ztm join --help.\n"]);
  const byEnv = await ztm(["get", "meshes", at, "--json"], {
    env: { ZTM_API_TOKEN: agent.token },
  });
  assertEquals([byEnv.code, byEnv.stdout], [0, "[]\n"]);
  const fileFirst = await ztm(["get", "meshes", at, `--api-token-file=${agent.database}.token`], {
    env: { ZTM_API_TOKEN: "wrong-wrong-wrong-wrong" },
  });
  assertEquals(fileFirst.code, 0, fileFirst.stderr);
  const envBeforeHome = await ztm(["get", "meshes", at], {
    home,
    env: { ZTM_API_TOKEN: "wrong-wrong-wrong-wrong" },
  });
  assertEquals(envBeforeHome.code, 1);
  const missing = await ztm(["get", "meshes", at, `--api-token-file=${join(home, "nope")}`]);
  assertEquals(missing.code, 1);
  assertEquals(
    missing.stderr,
    `ztm get: The --api-token-file "${join(home, "nope")}" does not exist\n`,
  );
});
