/**
 * The failure catalogue: each error's status and code, and how `errorBody`
 * renders known and unknown errors.
 */
import assert from "node:assert/strict";
import {
  BadRequest,
  Conflict,
  errorBody,
  errorFromResponse,
  errorMaker,
  Forbidden,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  ServiceUnavailable,
  SHARED_ERRORS,
  TooManyRequests,
  Unauthorized,
  withoutKeyMaterial,
  ZtmError,
} from "./errors.ts";
import { exportPrivateKeyPem, generateKeyPair } from "./certs.ts";

Deno.test("each error class carries its HTTP status, code and name", () => {
  const cases: [ZtmError, number][] = [
    [new BadRequest("bad_name", "Bad"), 400],
    [new Unauthorized("token_required", "Token"), 401],
    [new Forbidden("foreign_host", "Host"), 403],
    [new NotFound("unknown_certificate", "Unknown"), 404],
    [new MethodNotAllowed(["GET"]), 405],
    [new Conflict("name_taken", "Taken"), 409],
    [new PayloadTooLarge(16), 413],
    [new TooManyRequests("too_many", "Slow down"), 429],
    [new ServiceUnavailable("ca_unreachable", "Down"), 503],
  ];
  for (const [err, status] of cases) {
    assert.ok(err instanceof ZtmError && err instanceof Error);
    assert.equal(err.status, status);
    assert.equal(err.name, err.constructor.name);
    assert.deepEqual(errorBody(err), {
      status,
      body: { error: { code: err.code, message: err.message } },
    });
  }
});

Deno.test("MethodNotAllowed and PayloadTooLarge say what is allowed", () => {
  const err = new MethodNotAllowed(["GET", "POST"]);
  assert.deepEqual(err.allow, ["GET", "POST"]);
  assert.equal(err.message, "Method not allowed; use GET, POST");
  assert.equal(new PayloadTooLarge(16384).message, "Request body is larger than 16384 bytes");
});

Deno.test("errorBody turns anything else into a 500 without its details", () => {
  for (const thrown of [new Error("db path /secret"), "string", undefined, { status: 400 }]) {
    const { status, body } = errorBody(thrown);
    assert.equal(status, 500);
    assert.equal(body.error.code, "internal");
    assert.doesNotMatch(body.error.message, /secret/);
  }
});

Deno.test("a cause is kept for the log", () => {
  const cause = new Error("low level");
  assert.equal(new BadRequest("bad_csr", "Bad CSR", { cause }).cause, cause);
});

Deno.test("errorFromResponse rebuilds the error class, code and message of an error answer", () => {
  const notFound = errorFromResponse(
    404,
    JSON.stringify({ error: { code: "unknown_mesh", message: 'Unknown mesh "x"' } }),
  );
  assert.ok(notFound instanceof NotFound);
  assert.equal(notFound.status, 404);
  assert.equal(notFound.code, "unknown_mesh");
  assert.equal(notFound.message, 'Unknown mesh "x"');
  const conflict = errorFromResponse(409, '{"error":{"code":"port_in_use","message":"taken"}}');
  assert.ok(conflict instanceof Conflict);
  const other = errorFromResponse(502, "Bad gateway\n");
  assert.ok(other instanceof ZtmError && !(other instanceof NotFound));
  assert.equal(other.status, 502);
  assert.equal(other.code, "http_error");
  assert.equal(other.message, "Bad gateway");
  assert.equal(errorFromResponse(500, "").message, "HTTP status 500");
});

Deno.test("an error message never carries a private key back, but keeps names, ids and serials", async () => {
  const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const body = pem.split("\n").filter((l) => l && !l.startsWith("-----"));
  for (const quoted of [pem, body.join(""), JSON.stringify(pem)]) {
    const { body: rendered } = errorBody(new BadRequest("bad_name", `Bad name "${quoted}"`));
    const text = JSON.stringify(rendered);
    assert.doesNotMatch(text, /PRIVATE KEY/);
    for (const line of body) assert.ok(!text.includes(line.slice(8, 40)), text);
    assert.match(rendered.error.message, /^Bad name "/);
  }
  for (
    const kept of [
      'Unknown endpoint "4320282d-9958-49ae-9b17-f23a9b67b685"',
      "Certificate 17f48431940cf150fcd511c4f81660ac is revoked",
      'Bad service name "a-very-long-but-ordinary-service-name-for-the-db"',
      'Unknown mesh "ProductionEast"',
    ]
  ) {
    assert.equal(withoutKeyMaterial(kept), kept);
  }
});

Deno.test("control characters in a message, or in text for a terminal, come out as escapes", async () => {
  const { hasControlChars, safeJson, safeText } = await import("./errors.ts");
  const hostile = "db\x1b[2J\x1b]0;t\x07\u009b1m\r\u202eok\u2028";
  assert.equal(safeText(hostile), "db\\x1b[2J\\x1b]0;t\\x07\\x9b1m\\x0d\\u202eok\\u2028");
  assert.equal(safeText("web-01 ok: naïve ✓"), "web-01 ok: naïve ✓");
  assert.equal(hasControlChars(hostile), true);
  assert.equal(hasControlChars("a\tb"), true);
  assert.equal(hasControlChars("web-01"), false);
  const json = JSON.stringify({ name: hostile });
  assert.equal(hasControlChars(safeJson(json)), false);
  assert.deepEqual(JSON.parse(safeJson(json)), { name: hostile });
  const indented = JSON.stringify({ name: hostile, users: ["a"] }, null, 2);
  assert.deepEqual(JSON.parse(safeJson(indented)), { name: hostile, users: ["a"] });
  assert.ok(!/[\x7f-\x9f\u202e]/.test(safeJson(indented)));
  const { body } = errorBody(new BadRequest("bad_name", `Bad name "${hostile}"`));
  assert.equal(hasControlChars(body.error.message), false);
  assert.match(body.error.message, /db\\x1b\[2J/);
});

Deno.test("errorMaker makes the class of each code's status from its catalogue", () => {
  const make = errorMaker({ unknown_mesh: 404, hub_down: 503, bad_answer: 502, two: [400, 403] });
  const notFound = make("unknown_mesh", 'Unknown mesh "x"');
  assert(notFound instanceof NotFound);
  assert.deepStrictEqual([notFound.status, notFound.code, notFound.message], [
    404,
    "unknown_mesh",
    'Unknown mesh "x"',
  ]);
  assert(make("hub_down", "down") instanceof ServiceUnavailable);
  const bad = make("bad_answer", "forged", { cause: "why" });
  assert.deepStrictEqual([bad.constructor, bad.status, bad.cause], [ZtmError, 502, "why"]);
  const two = make("two", 403, "refused");
  assert(two instanceof Forbidden);
  assert.deepStrictEqual([two.status, two.code], [403, "two"]);
});

Deno.test("every code of the shared catalogue is snake_case with an HTTP error status", () => {
  for (const [code, status] of Object.entries(SHARED_ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), code);
    assert(status >= 400 && status < 600, `${code}: ${status}`);
  }
});
