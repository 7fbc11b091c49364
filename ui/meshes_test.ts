/**
 * The joined meshes the header and the status screen share, in a real
 * browser (the page's own origin answers `GET /api/meshes`): a refresh
 * replaces them and clears the last failure; a failure keeps them and says
 * why.
 */
import assert from "node:assert/strict";
import { serveModulePage, uiModule } from "./_fixture.ts";

const ENTRY = `
import { meshes, meshesError, meshesLoaded, refreshMeshes } from "${uiModule("meshes.ts")}";
const w = window as any;
w.state = () => ({ meshes: meshes.value, error: meshesError.value, loaded: meshesLoaded.value });
w.refresh = async () => { await refreshMeshes(); return w.state(); };
w.unload = () => { meshesLoaded.value = false; };
w.ready = true;
`;

// deno-lint-ignore no-explicit-any
type Win = any;

Deno.test("refreshMeshes replaces the meshes and clears the failure; a failure keeps them and says why", async () => {
  const signedOut = () =>
    Response.json({ error: { code: "token_required", message: "x" } }, { status: 401 });
  let answer: () => Response = signedOut;
  await using s = await serveModulePage({ entry: ENTRY, api: () => answer() });
  const page = await s.open("/");
  await page.waitForFunction(() => (window as Win).ready, null, { timeout: 10_000 });
  await page.evaluate(() => (window as Win).unload());
  const refresh = () => page.evaluate(() => (window as Win).refresh());

  const ended = "Your dashboard session has ended (the agent restarted?). Open a new login URL.";
  // A page served without the meshes stays "not loaded" until an answer comes.
  assert.deepEqual(await refresh(), { meshes: [], error: ended, loaded: false });
  assert.deepEqual(s.requests, ["GET /api/meshes"]);

  answer = () => Response.json([{ name: "work" }, { name: "home" }]);
  assert.deepEqual(await refresh(), {
    meshes: [{ name: "work" }, { name: "home" }],
    error: undefined,
    loaded: true,
  });

  answer = () =>
    Response.json({ error: { code: "token_required", message: "x" } }, { status: 401 });
  assert.deepEqual(await refresh(), {
    meshes: [{ name: "work" }, { name: "home" }],
    error: "Your dashboard session has ended (the agent restarted?). Open a new login URL.",
    loaded: true,
  });

  answer = () => Response.json([{ name: "work" }]);
  assert.deepEqual(await refresh(), { meshes: [{ name: "work" }], error: undefined, loaded: true });
  assert.deepEqual(s.browser.unexpectedErrors([401]), []);
});
