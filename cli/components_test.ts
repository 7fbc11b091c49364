/**
 * `ztm ca|hub|agent|start`: each name loads its own component's entry point
 * (the `main` its `main.ts` exports) and has a one-line summary for `ztm --help`.
 */
import assert from "node:assert/strict";
import { COMPONENTS } from "./components.ts";

Deno.test("each component name loads that component's main, and says in one line what it runs", async () => {
  assert.deepEqual(Object.keys(COMPONENTS), ["ca", "hub", "agent", "start"]);
  const entries = {
    ca: (await import("@ztm/ca/main")).main,
    hub: (await import("@ztm/hub/main")).main,
    agent: (await import("@ztm/agent/main")).main,
    start: (await import("./start.ts")).main,
  };
  for (const [name, component] of Object.entries(COMPONENTS)) {
    assert.equal(await component.main(), entries[name as keyof typeof entries], name);
    assert.match(component.summary, /^run /, name);
    assert.ok(!component.summary.includes("\n"), name);
  }
  assert.match(COMPONENTS.ca.summary, /certificate authority/);
  assert.match(COMPONENTS.hub.summary, /hub/);
  assert.match(COMPONENTS.agent.summary, /agent/);
});
