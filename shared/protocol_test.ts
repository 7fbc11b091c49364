import assert from "node:assert/strict";
import { BadRequest } from "./errors.ts";
import { checkHubMessage, HUB_PATHS, HUB_ROUTES, hubPath } from "./protocol.ts";

const from = { endpoint: "e", user: "alice" };
const service = { proto: "tcp", name: "web" };
const ticket = "ab".repeat(32);

Deno.test("hub lines are checked against the protocol's types before use", () => {
  assert.deepEqual(
    checkHubMessage({ type: "open", sid: "s", service, from, ticket, extra: 1 }),
    { type: "open", sid: "s", service, from, ticket },
  );
  assert.deepEqual(checkHubMessage({ type: "crl", number: 7, pem: "x" }), {
    type: "crl",
    number: 7,
  });
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ type: "open", sid: "s", service, ticket }, /"from"/],
    [{ type: "open", sid: "s", service, from }, /"ticket"/],
    [{ type: "open", sid: "s", service, from, ticket: "AB".repeat(32) }, /"ticket"/],
    [{ type: "open", sid: "s", service, from: { endpoint: "e" }, ticket }, /"from.user"/],
    [{ type: "open", sid: "", service, from, ticket }, /"sid"/],
    [
      { type: "open", sid: "s", service: { proto: "sctp", name: "x" }, from, ticket },
      /service.proto/,
    ],
    [{ type: "open", sid: "s", service, from, ticket: 7 }, /"ticket"/],
    [{ type: "manage", rid: "r", request: {} }, /"from"/],
    [{ type: "crl", number: null }, /"number"/],
    [{ type: "crl", number: -1 }, /"number"/],
    [{ type: "crl", pem: "-----BEGIN X509 CRL-----" }, /"number"/],
    [{ type: "welcome", endpoint: {}, hub: { version: "1", dataPort: 70_000 } }, /dataPort/],
    [{ type: "error", code: "x" }, /"message"/],
    [{ type: "__proto__" }, /unknown type/],
  ];
  for (const [line, why] of bad) {
    assert.throws(() => checkHubMessage({ type: "", ...line }), (err: unknown) => {
      assert.ok(err instanceof BadRequest, String(err));
      assert.match(err.message, why);
      return true;
    });
  }
});

Deno.test("hub paths are built from the one route table, each parameter encoded", () => {
  assert.equal(HUB_PATHS.control("ep-1"), "/api/endpoints/ep-1/control");
  assert.equal(
    HUB_PATHS.tunnel("ep-1", "udp", "dns/x"),
    "/api/endpoints/ep-1/services/udp/dns%2Fx",
  );
  assert.equal(hubPath("manage", { id: "a b" }), "/api/endpoints/a%20b/manage");
  assert.throws(() => hubPath("endpoint"), /needs id/);
  for (const [name, route] of Object.entries(HUB_ROUTES)) {
    assert.ok(["GET", "POST"].includes(route.method), name);
    assert.match(route.pattern, /^\/api\//, name);
  }
});
