/**
 * Every component raises its codes through its catalogue (`SHARED_ERRORS`,
 * `AGENT_ERRORS`, `CA_ERRORS`, `HUB_ERRORS`, `CLI_ERRORS`), so a code has one
 * status and one place to look it up: no source file outside
 * `shared/errors.ts` builds an error class, or an error body, around a code
 * written inline.
 * Errors passed on from a peer (its status and code) are not written inline
 * and stay allowed.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const COMPONENTS = ["shared", "ca", "hub", "agent", "cli"];
const INLINE_CODE = new RegExp(
  [
    /new (BadRequest|Unauthorized|Forbidden|NotFound|Conflict|TooManyRequests|NotImplemented|ServiceUnavailable|GatewayTimeout)\(\s*["'`]/,
    /new ZtmError\(\s*\d/,
    /error: \{ code: ["'`]/,
  ].map((r) => r.source).join("|"),
  "g",
);

function* sources(dir: string): Generator<string> {
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sources(path);
    else if (/\.tsx?$/.test(entry.name) && !/_test\.tsx?$/.test(entry.name)) yield path;
  }
}

Deno.test("no component writes an error code inline: each raises through its catalogue", () => {
  const inline: string[] = [];
  for (const component of COMPONENTS) {
    for (const path of sources(join(ROOT, component))) {
      const file = relative(ROOT, path);
      if (file === join("shared", "errors.ts")) continue;
      const text = Deno.readTextFileSync(path);
      for (const m of text.matchAll(INLINE_CODE)) {
        inline.push(`${file}:${text.slice(0, m.index).split("\n").length}: ${m[0]}`);
      }
    }
  }
  assertEquals(inline, []);
});
