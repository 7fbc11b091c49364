/**
 * The test files README.md and SECURITY.md point readers to exist: each is
 * named with its folder from the repository root (`tests/data/udp_test.ts`),
 * and a pattern (`tests/faults/fault_*_test.ts`) matches at least one file.
 * Fenced blocks are left out: the README's layout block names files relative
 * to the folder each of its lines starts with.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** Each `*_test.ts` name in `text` outside fenced blocks, with its line. */
function testNames(text: string): { name: string; line: number }[] {
  const found: { name: string; line: number }[] = [];
  let fenced = false;
  text.split("\n").forEach((line, i) => {
    if (line.trimStart().startsWith("```")) fenced = !fenced;
    else if (!fenced) {
      for (const m of line.matchAll(/[\w./*-]*_test\.ts\b/g)) {
        found.push({ name: m[0], line: i + 1 });
      }
    }
  });
  return found;
}

/** Whether `path` (from the root; `*` in its last part matches any characters) names a file. */
function exists(path: string): boolean {
  const at = path.lastIndexOf("/");
  const dir = join(ROOT, path.slice(0, at));
  const pattern = new RegExp(
    `^${path.slice(at + 1).replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`,
  );
  try {
    for (const e of Deno.readDirSync(dir)) if (e.isFile && pattern.test(e.name)) return true;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return false;
}

Deno.test("every test file README.md and SECURITY.md name is there, at the path given", () => {
  const wrong: string[] = [];
  let named = 0;
  for (const doc of ["README.md", "SECURITY.md"]) {
    for (const { name, line } of testNames(Deno.readTextFileSync(join(ROOT, doc)))) {
      named++;
      if (!name.includes("/")) wrong.push(`${doc}:${line}: ${name} (name it with its folder)`);
      else if (!exists(name)) wrong.push(`${doc}:${line}: ${name} (no such file)`);
    }
  }
  assert.ok(named > 50, `only ${named} test files named: is the pattern still right?`);
  assert.deepEqual(wrong, []);
});
