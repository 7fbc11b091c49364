/**
 * Every component raises its codes through its catalogue (`SHARED_ERRORS`,
 * `AGENT_ERRORS`, `CA_ERRORS`, `HUB_ERRORS`, `CLI_ERRORS`), so a code has one
 * status and one place to look it up: no source file outside
 * `shared/errors.ts` builds an error class, or an error body, around a code
 * written inline.
 * Errors passed on from a peer (its status and code) are not written inline
 * and stay allowed. Each catalogue's codes are snake_case with error
 * statuses, and a code `shared/` raises too has the same status in both.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { AGENT_ERRORS } from "@ztm/shared/agent_api";
import { type CodeCatalogue, SHARED_ERRORS } from "@ztm/shared/errors";
import { CA_ERRORS } from "../ca/errors.ts";
import { CLI_ERRORS } from "../cli/errors.ts";
import { HUB_ERRORS } from "../hub/errors.ts";

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

Deno.test("every catalogue's codes are snake_case with error statuses, and shared/'s codes keep their status", () => {
  const catalogues: Record<string, CodeCatalogue> = {
    SHARED_ERRORS,
    AGENT_ERRORS,
    CA_ERRORS,
    HUB_ERRORS,
    CLI_ERRORS,
  };
  const shared: CodeCatalogue = SHARED_ERRORS;
  const faults = Object.entries(catalogues).flatMap(([name, catalogue]) =>
    Object.entries(catalogue).flatMap(([code, status]) => [
      ...(/^[a-z][a-z0-9_]*$/.test(code) ? [] : [`${name}.${code}: not snake_case`]),
      ...[status].flat().filter((s) => s < 400 || s >= 600).map((s) => `${name}.${code}: ${s}`),
      ...(code in shared && String(shared[code]) !== String(status)
        ? [`${name}.${code}: ${status}, in SHARED_ERRORS ${shared[code]}`]
        : []),
    ])
  );
  assertEquals(faults, []);
});
