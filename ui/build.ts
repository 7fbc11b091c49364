/**
 * `deno task ui:build`: bundles the dashboard (`ui/client.tsx` and what it
 * imports, Preact and signals included) into `ui/dist/dashboard.js` with
 * `deno bundle`. The bundle is committed so the agent serves it without a
 * build step; `tests/ui/ui_bundle_test.ts` rebuilds it and fails when the
 * committed file is stale.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const UI_DIR = dirname(fileURLToPath(import.meta.url));
/** The committed bundle. */
export const BUNDLE_PATH: string = join(UI_DIR, "dist", "dashboard.js");

/** Bundles the dashboard into `output`; throws with deno's output on failure. */
export async function bundleDashboard(output: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      `--output=${output}`,
      join(UI_DIR, "client.tsx"),
    ],
    cwd: dirname(UI_DIR),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const dec = new TextDecoder();
    throw new Error(`deno bundle failed:\n${dec.decode(out.stderr)}${dec.decode(out.stdout)}`);
  }
}

if (import.meta.main) {
  await bundleDashboard(BUNDLE_PATH);
  console.log(`${BUNDLE_PATH}: ${(await Deno.stat(BUNDLE_PATH)).size} bytes`);
}
