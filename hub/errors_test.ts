import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  BadRequest,
  GatewayTimeout,
  SHARED_ERRORS,
  TooManyRequests,
  ZtmError,
} from "@ztm/shared/errors";
import { HUB_ERRORS, hubError } from "./errors.ts";

Deno.test("the hub's codes are snake_case with an error status, and a code shared/ also raises has its status", () => {
  for (const [code, status] of Object.entries(HUB_ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), code);
    for (const s of [status].flat()) assert(s >= 400 && s < 600, `${code}: ${s}`);
    if (code in SHARED_ERRORS) {
      assertEquals(status, SHARED_ERRORS[code as keyof typeof SHARED_ERRORS], code);
    }
  }
});

Deno.test("hubError makes the class of the code's status", () => {
  const full = hubError("hub_full", "The hub has reached its session limit");
  assert(full instanceof TooManyRequests);
  assertEquals([full.status, full.code], [429, "hub_full"]);
  assert(hubError("bad_endpoint_id", 'Bad endpoint id "x"') instanceof BadRequest);
  assert(hubError("open_timeout", "Endpoint did not answer") instanceof GatewayTimeout);
  assert(hubError("endpoint_offline", "Endpoint is offline") instanceof ZtmError);
});
