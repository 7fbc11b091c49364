import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  AGENT_ERRORS,
  AGENT_PATHS,
  agentError,
  agentPath,
  ENDPOINT_PATHS,
  ENDPOINT_ROUTES,
} from "./agent_api.ts";
import { Forbidden, NotFound, SHARED_ERRORS } from "./errors.ts";

Deno.test("agentPath fills each parameter percent-encoded, so a name cannot add a segment", () => {
  assertEquals(agentPath(AGENT_PATHS.meshes), "/api/meshes");
  assertEquals(
    agentPath(AGENT_PATHS.endpoint, { mesh: "home/x", ep: "laptop 2" }),
    "/api/meshes/home%2Fx/endpoints/laptop%202",
  );
  assertEquals(
    agentPath(`${AGENT_PATHS.endpoint}/${ENDPOINT_PATHS.port}`, {
      mesh: "home",
      ep: "me",
      ip: "::1",
      proto: "tcp",
      port: 8080,
    }),
    "/api/meshes/home/endpoints/me/ports/%3A%3A1/tcp/8080",
  );
});

Deno.test("agentPath throws naming a parameter it was not given", () => {
  throws(
    () => agentPath(AGENT_PATHS.policy, {}),
    /No value for :mesh in \/api\/meshes\/:mesh\/policy/,
  );
});

Deno.test("each endpoint operation has one name, and one method per path", () => {
  const names = ENDPOINT_ROUTES.map((r) => r.name);
  assertEquals(new Set(names).size, names.length);
  const keys = ENDPOINT_ROUTES.map((r) => `${r.method} ${r.pattern}`);
  assertEquals(new Set(keys).size, keys.length);
});

Deno.test("the agent's codes are snake_case with an error status, and a code shared/ also raises has its status", () => {
  for (const [code, status] of Object.entries(AGENT_ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), code);
    for (const s of [status].flat()) assert(s >= 400 && s < 600, `${code}: ${s}`);
    if (code in SHARED_ERRORS) {
      assertEquals(status, SHARED_ERRORS[code as keyof typeof SHARED_ERRORS], code);
    }
  }
});

Deno.test("agentError makes the class of the code's status", () => {
  assert(agentError("unknown_mesh", 'Unknown mesh "x"') instanceof NotFound);
  assertEquals(agentError("target_unreachable", "down").status, 502);
  assert(agentError("peer_refused", 403, "refused") instanceof Forbidden);
});
