import assert from "node:assert/strict";
import type { MeshSummary } from "@ztm/ui";
import { DashboardPages } from "./dashboard.ts";

const MESH: MeshSummary = {
  name: "home-mesh-7f3a",
  endpoint: { id: "ep-" + "6".repeat(32), name: "desk-1" },
  user: "alice",
  bootstraps: ["hub.example.net:8888"],
  joinedAt: "2026-12-01T00:00:00.000Z",
  certificate: { serial: "0a", notAfter: "2027-12-01T00:00:00.000Z" },
  caCertificate: { notAfter: "2036-12-01T00:00:00.000Z", daysLeft: 3650, warning: null },
  status: null,
};

Deno.test("only GET and HEAD under /assets/ are assets; an unknown asset name is a 404", async () => {
  const pages = new DashboardPages({ meshes: () => [] });
  const at = (path: string, method = "GET") =>
    pages.asset(new Request(`http://127.0.0.1:7777${path}`, { method }));
  assert.equal(await at("/"), undefined);
  assert.equal(await at("/api/meshes"), undefined);
  assert.equal(await at("/assets/x.js", "POST"), undefined);
  const missing = await at("/assets/nope.js");
  assert.equal(missing?.status, 404);
  await missing?.body?.cancel();

  // The page names its bundle; that name is served, and answers 304 to its own etag.
  const page = await (await pages.app(false)).text();
  const js = page.match(/\/assets\/[^"]+\.js/)?.[0];
  assert.ok(js, "the page names its bundle");
  const served = await at(js);
  assert.equal(served?.status, 200);
  const etag = served!.headers.get("etag");
  await served!.body?.cancel();
  const again = await pages.asset(
    new Request(`http://127.0.0.1:7777${js}`, { headers: { "if-none-match": etag! } }),
  );
  assert.equal(again?.status, 304);
  const head = await at(js, "HEAD");
  assert.equal(head?.status, 200);
  await head?.body?.cancel();
});

Deno.test("the app page carries the meshes only when the request carried the API's credentials", async () => {
  let asked = 0;
  const pages = new DashboardPages({
    meshes: () => (asked++, [MESH]),
    endpointName: "laptop-9",
  });
  const withData = await (await pages.app(true, "s3cret-session")).text();
  assert.ok(withData.includes(MESH.name));
  assert.ok(withData.includes("laptop-9"));
  assert.equal(asked, 1);
  const empty = await (await pages.app(false)).text();
  assert.ok(!empty.includes(MESH.name));
  assert.equal(asked, 1, "the meshes are not even read");
});

Deno.test("the sign-in page (401) names this agent's address and token file, escaped", async () => {
  const pages = new DashboardPages({ meshes: () => [MESH], tokenFile: "/var/lib/ztm/agent.token" });
  const res = await pages.signedOut(
    new Request("http://[::1]:7788/", { headers: { host: "[::1]:7788" } }),
    false,
  );
  assert.equal(res.status, 401);
  const html = await res.text();
  assert.ok(html.includes("http://[::1]:7788"));
  assert.ok(html.includes("/var/lib/ztm/agent.token"));
  assert.ok(!html.includes(MESH.name), "no mesh data before sign-in");

  const hostile = await pages.signedOut(
    new Request("http://127.0.0.1:7777/", { headers: { host: "<script>x</script>" } }),
    true,
  );
  const text = await hostile.text();
  assert.ok(!text.includes("<script>x</script>"));
  assert.match(text, /This login link does not work/);
});
