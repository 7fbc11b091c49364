/**
 * The layout the README promises, so a reader finds any module's test in one
 * step: a unit test sits beside the module it tests (`x.ts` and `x_test.ts`,
 * or `x_<aspect>_test.ts` for a second file on one aspect), every test beside
 * a module is named for a module that exists, and the few modules with no
 * unit test of their own (entry points, pages, type-only files) are named in
 * `SUITE_TESTED` with the suites that run them. `tests/` holds the
 * cross-component suites in folders by area and, at its top, only the
 * tree-wide checks.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PACKAGES = ["shared", "ca", "hub", "agent", "cli", "ui"];
const SOURCE = /\.tsx?$/;
const TEST = /_test\.tsx?$/;

/** Modules with no unit test beside them: why, and the suites that run them. */
const SUITE_TESTED: Record<string, { why: string; suites: string[] }> = {
  "shared/mod.ts": { why: "re-exports only", suites: ["tests/cli/cli_client_test.ts"] },
  "shared/version.ts": { why: "one constant", suites: ["tests/ca/ca_flags_test.ts"] },
  "shared/usage_error.ts": { why: "one error class", suites: ["shared/flags_test.ts"] },
  "ca/main.ts": {
    why: "the CA's process: flags into startCa",
    suites: ["tests/ca/ca_flags_test.ts", "tests/ca/ca_walkthrough_test.ts"],
  },
  "ca/mod.ts": {
    why: "startCa wires the store, the key and the server",
    suites: ["tests/ca/ca_walkthrough_test.ts", "tests/ca/ca_restart_test.ts"],
  },
  "hub/main.ts": {
    why: "the hub's process: flags into startHub",
    suites: ["tests/hub/hub_admission_test.ts", "tests/faults/control_flood_test.ts"],
  },
  "hub/mod.ts": {
    why: "startHub wires identity, server, data port and CA relay",
    suites: ["tests/hub/hub_admission_test.ts", "tests/hub/multi_hub_test.ts"],
  },
  "agent/mod.ts": {
    why: "startAgent wires the store, the API and each mesh",
    suites: ["tests/data/mesh_test.ts", "tests/faults/restart_test.ts"],
  },
  "agent/runtime.ts": {
    why: "types only (the API's view of a mesh)",
    suites: ["agent/api_test.ts"],
  },
  "cli/main.ts": {
    why: "dispatch and exit codes, run as a process",
    suites: ["tests/cli/cli_errors_test.ts", "tests/cli/cli_quickstart_test.ts"],
  },
  "cli/command.ts": { why: "types only", suites: ["cli/mesh_commands_test.ts"] },
  "cli/compile.ts": {
    why: "deno compile needs denort, which this network cannot fetch: the dry run is tested",
    suites: ["tests/cli/cli_components_test.ts"],
  },
  "ui/app.tsx": { why: "the page router, in a browser", suites: ["tests/ui/ui_journey_test.ts"] },
  "ui/client.tsx": {
    why: "the bundle's entry, in a browser",
    suites: ["tests/ui/ui_bundle_test.ts", "tests/ui/ui_journey_test.ts"],
  },
  "ui/build.ts": { why: "the bundler's run", suites: ["tests/ui/ui_bundle_test.ts"] },
  "ui/api_types.ts": { why: "types only", suites: ["tests/ui/ui_journey_test.ts"] },
  "ui/views/status.tsx": {
    why: "a page, in Chromium",
    suites: ["tests/ui/ui_hubs_test.ts", "tests/ui/ui_offline_test.ts"],
  },
  "ui/views/join.tsx": { why: "a page, in Chromium", suites: ["tests/ui/ui_join_test.ts"] },
  "ui/views/join_invite.tsx": {
    why: "a page, in Chromium",
    suites: ["tests/ui/ui_invite_test.ts"],
  },
  "ui/views/invite.tsx": { why: "a page, in Chromium", suites: ["tests/ui/ui_invite_qr_test.ts"] },
  "ui/views/endpoints.tsx": { why: "a page, in Chromium", suites: ["tests/ui/ui_scale_test.ts"] },
  "ui/views/endpoint.tsx": {
    why: "a page, in Chromium",
    suites: ["tests/ui/ui_traffic_test.ts", "tests/ui/ui_first_contact_test.ts"],
  },
  "ui/views/services.tsx": {
    why: "a page, in Chromium",
    suites: ["tests/ui/ui_first_contact_test.ts", "tests/ui/ui_journey_test.ts"],
  },
  "ui/views/proxy.tsx": { why: "a page, in Chromium", suites: ["tests/ui/ui_proxy_test.ts"] },
  "ui/views/audit_log.tsx": { why: "a page, in Chromium", suites: ["tests/ui/ui_journey_test.ts"] },
};

/** The tree-wide checks at the top of tests/; every other suite is in a folder by area. */
const TOP_LEVEL = ["docs_paths_test.ts", "error_codes_test.ts", "layout_test.ts"];
const AREAS = ["ca", "cli", "data", "faults", "fixtures", "fuzz", "hub", "nat", "security", "ui"];

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (path !== "ui/dist") yield* sources(path);
    } else if (SOURCE.test(entry.name)) yield path;
  }
}

const files = PACKAGES.flatMap((p) => [...sources(p)]);
/** A folder's shared test helpers (`_fixture.ts`) are neither modules nor tests. */
const modules = files.filter((f) => !TEST.test(f) && !/\/_[^/]*$/.test(f));
const tests = files.filter((f) => TEST.test(f));
const stem = (path: string) => path.replace(SOURCE, "");

/** The module a test beside modules is named for: the longest `x` of `x_test` or `x_<aspect>_test`. */
function moduleOf(test: string): string | undefined {
  const named = modules.filter((m) => {
    const s = stem(m);
    return test.startsWith(`${s}_`) && /^([a-z0-9]+_)*test\.tsx?$/.test(test.slice(s.length + 1));
  });
  return named.sort((a, b) => b.length - a.length)[0];
}

Deno.test("every module has a unit test beside it, or is named with the suites that run it", () => {
  const tested = new Set(tests.map(moduleOf).filter((m) => m !== undefined));
  const missing = modules.filter((m) => !tested.has(m) && !(m in SUITE_TESTED));
  const listedButTested = Object.keys(SUITE_TESTED).filter((m) => tested.has(m));
  const listedButGone = Object.keys(SUITE_TESTED).filter((m) => !modules.includes(m));
  assertEquals({ missing, listedButTested, listedButGone }, {
    missing: [],
    listedButTested: [],
    listedButGone: [],
  });
});

Deno.test("every test beside modules is named for a module that exists", () => {
  assertEquals(tests.filter((t) => moduleOf(t) === undefined), []);
});

Deno.test("each module named without a unit test has a reason and suites that exist", () => {
  const wrong: string[] = [];
  for (const [module, { why, suites }] of Object.entries(SUITE_TESTED)) {
    if (!why || suites.length === 0) wrong.push(`${module}: no reason or no suite`);
    for (const suite of suites) {
      if (!existsSync(join(ROOT, suite))) wrong.push(`${module}: ${suite} does not exist`);
    }
  }
  assertEquals(wrong, []);
});

Deno.test("tests/ holds folders by area and, at its top, only the tree-wide checks", () => {
  const top = readdirSync(join(ROOT, "tests"), { withFileTypes: true });
  assertEquals(top.filter((e) => e.isDirectory()).map((e) => e.name).sort(), AREAS);
  assertEquals(top.filter((e) => !e.isDirectory()).map((e) => e.name).sort(), TOP_LEVEL);
});
