/**
 * The agent's path table and its two path builders. `agentPath`'s encoding
 * of names is also checked through its re-export in `agent_api_test.ts`.
 */
import assert from "node:assert/strict";
import {
  AGENT_PATHS,
  agentPath,
  ENDPOINT_PATHS,
  endpointPath,
  SESSION_COOKIE,
  SESSION_HEADER,
} from "./agent_paths.ts";

/** The `:name` parameters of a pattern. */
const paramsOf = (pattern: string) =>
  pattern.split("/").filter((s) => s.startsWith(":")).map((s) => s.slice(1));

Deno.test("every agent path is absolute and unique, every endpoint path relative, and each parameter a whole segment", () => {
  const all = Object.values(AGENT_PATHS);
  assert.equal(new Set(all).size, all.length);
  for (const p of all) {
    assert.match(p, /^\/([a-z:-]+(\/[a-z:-]+)*)?$/, p);
    for (const seg of p.split("/")) assert.ok(!seg.slice(1).includes(":"), p);
  }
  const relative = Object.values(ENDPOINT_PATHS);
  assert.equal(new Set(relative).size, relative.length);
  for (const p of relative) assert.match(p, /^[a-z]+(\/[a-z:]+)*$/, p);
  assert.match(SESSION_HEADER, /^x-ztm-[a-z-]+$/);
  assert.match(SESSION_COOKIE, /^[a-z_]+$/);
});

Deno.test("agentPath fills numbers and leaves a pattern without parameters as it is", () => {
  assert.equal(agentPath(AGENT_PATHS.dashboard), "/");
  assert.equal(agentPath(AGENT_PATHS.loginCodes, { extra: "ignored" }), "/api/login-codes");
  assert.equal(agentPath(AGENT_PATHS.asset, { name: "app.1a2b.js" }), "/assets/app.1a2b.js");
  assert.equal(agentPath("/x/:n", { n: 0 }), "/x/0");
  for (const bad of [undefined, null, true, {}, ["a"]]) {
    assert.throws(() => agentPath("/x/:n", { n: bad }), {
      name: "TypeError",
      message: "No value for :n in /x/:n",
    }, String(bad));
  }
});

Deno.test("endpointPath puts an operation under one endpoint of one mesh, its names encoded", () => {
  assert.equal(
    endpointPath("home", "laptop", ENDPOINT_PATHS.log),
    "/api/meshes/home/endpoints/laptop/log",
  );
  assert.equal(
    endpointPath("home", "ep/x", ENDPOINT_PATHS.service, { proto: "tcp", name: "web?x=1" }),
    "/api/meshes/home/endpoints/ep%2Fx/services/tcp/web%3Fx%3D1",
  );
  // The mesh and endpoint given as arguments win over the same names in params.
  assert.equal(
    endpointPath("home", "laptop", ENDPOINT_PATHS.ports, { mesh: "other", ep: "other" }),
    "/api/meshes/home/endpoints/laptop/ports",
  );
  assert.throws(
    () => endpointPath("home", "laptop", ENDPOINT_PATHS.port, { ip: "::1", proto: "tcp" }),
    {
      name: "TypeError",
      message: /No value for :port/,
    },
  );
  for (const p of Object.values(ENDPOINT_PATHS)) {
    const params = Object.fromEntries(paramsOf(p).map((n) => [n, n]));
    assert.ok(endpointPath("m", "e", p, params).startsWith("/api/meshes/m/endpoints/e/"), p);
  }
});

Deno.test("a name URL parsing would resolve (. or ..) is refused, not sent to another route", () => {
  for (const ep of [".", ".."]) {
    assert.throws(() => endpointPath("home", ep, ENDPOINT_PATHS.log), RangeError);
    assert.throws(() => agentPath(AGENT_PATHS.endpoint, { mesh: "home", ep }), RangeError);
  }
});
