/**
 * Prints `N passed, N failed` (and skipped) from a JUnit XML file written by
 * `deno test --junit-path`, counting real test cases. Exits 1 when any failed
 * or when the file holds no test case at all.
 */
const path = Deno.args[0];
const xml = await Deno.readTextFile(path);
const cases = xml.match(/<testcase\b[\s\S]*?(?:\/>|<\/testcase>)/g) ?? [];
let passed = 0, failed = 0, skipped = 0;
const failures: string[] = [];
for (const c of cases) {
  const name = /name="([^"]*)"/.exec(c)?.[1] ?? "?";
  if (/<(failure|error)\b/.test(c)) {
    failed++;
    failures.push(name);
  } else if (/<skipped\b/.test(c)) skipped++;
  else passed++;
}
for (const f of failures) console.log(`FAILED: ${f}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
if (failed > 0 || passed + failed === 0) Deno.exit(1);
