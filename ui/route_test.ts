/**
 * The dashboard's hash routes: each screen's hash and back, what a typed or
 * stale hash falls back to, and names that need encoding; and `navigate`
 * on a real browser's history.
 */
import assert from "node:assert/strict";
import { hrefOf, parseHash, type Route } from "./route.ts";
import { serveModulePage, uiModule } from "./_fixture.ts";

Deno.test("hrefOf and parseHash agree on every screen", () => {
  const routes: [Route, string][] = [
    [{ view: "status" }, "#/"],
    [{ view: "join" }, "#/join"],
    [{ view: "endpoints", mesh: "work", q: "", page: 1 }, "#/m/work/endpoints"],
    [{ view: "endpoints", mesh: "work", q: "web 1", page: 3 }, "#/m/work/endpoints?q=web+1&page=3"],
    [{ view: "endpoint", mesh: "work", ep: "laptop", page: 1 }, "#/m/work/endpoints/laptop"],
    [{ view: "endpoint", mesh: "work", ep: "laptop", page: 2 }, "#/m/work/endpoints/laptop?page=2"],
    [{ view: "services", mesh: "work", q: "db", page: 1 }, "#/m/work/services?q=db"],
    [{ view: "invite", mesh: "work" }, "#/m/work/invite"],
  ];
  for (const [route, hash] of routes) {
    assert.equal(hrefOf(route), hash);
    assert.deepEqual(parseHash(hash), route, hash);
  }
});

Deno.test("names with slashes, spaces and non-ASCII letters survive the hash", () => {
  const route: Route = { view: "endpoint", mesh: "my mesh/2", ep: "café?&#", page: 1 };
  const hash = hrefOf(route);
  assert.equal(hash, "#/m/my%20mesh%2F2/endpoints/caf%C3%A9%3F%26%23");
  assert.deepEqual(parseHash(hash), route);
  // A bad escape is kept as it was typed rather than failing the page.
  assert.deepEqual(parseHash("#/m/%E0%A4%A/endpoints"), {
    view: "endpoints",
    mesh: "%E0%A4%A",
    q: "",
    page: 1,
  });
});

Deno.test("a hash no screen has, or a bad page number, falls back to the status screen and page 1", () => {
  for (const hash of ["", "#", "#/", "#/nowhere", "#/m", "#/m/", "#/m/work", "#/m/work/hubs"]) {
    assert.deepEqual(parseHash(hash), { view: "status" }, hash);
  }
  assert.deepEqual(parseHash("/join"), { view: "join" }, "the leading # is optional");
  for (const page of ["0", "-4", "x", ""]) {
    assert.equal((parseHash(`#/m/w/services?page=${page}`) as { page: number }).page, 1, page);
  }
  assert.equal((parseHash("#/m/w/services?page=7abc") as { page: number }).page, 7);
});

const NAVIGATE_ENTRY = `
import { navigate, route } from "${uiModule("route.ts")}";
const w = window as any;
w.go = (r: unknown, replace: boolean) => {
  navigate(r as never, replace);
  return { hash: location.hash, length: history.length, route: route.value };
};
w.ready = true;
`;

Deno.test("navigate pushes the route's hash onto the history, or replaces the current entry", async () => {
  await using s = await serveModulePage({ entry: NAVIGATE_ENTRY });
  const page = await s.open("/");
  await page.waitForFunction(() => (window as Any).ready, null, { timeout: 10_000 });
  const go = (r: Route, replace = false) =>
    page.evaluate(([r, replace]) => (window as Any).go(r, replace), [r, replace] as const);
  const start = await page.evaluate(() => history.length);
  const endpoints: Route = { view: "endpoints", mesh: "work", q: "db", page: 2 };
  assert.deepEqual(await go(endpoints), {
    hash: "#/m/work/endpoints?q=db&page=2",
    length: start + 1,
    route: endpoints,
  });
  const join: Route = { view: "join" };
  assert.deepEqual(await go(join, true), { hash: "#/join", length: start + 1, route: join });
  await page.goBack({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => location.hash), "", "the replaced entry is gone");
});

// deno-lint-ignore no-explicit-any
type Any = any;
