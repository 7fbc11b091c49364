import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  BadRequest,
  Conflict,
  Forbidden,
  GatewayTimeout,
  NotFound,
  ServiceUnavailable,
  TooManyRequests,
  type ZtmError,
} from "@ztm/shared/errors";
import { HUB_ERRORS, hubError, type HubErrorCode } from "./errors.ts";

const CLASS_OF: Record<number, new (code: string, message: string) => ZtmError> = {
  400: BadRequest,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  429: TooManyRequests,
  503: ServiceUnavailable,
  504: GatewayTimeout,
};

Deno.test("hubError makes each hub code with its status, as the class of that status", () => {
  for (const [code, status] of Object.entries(HUB_ERRORS)) {
    const err = hubError(code as HubErrorCode, `Refused: ${code}`);
    assertEquals([err.status, err.code, err.message], [status, code, `Refused: ${code}`]);
    assert(err instanceof CLASS_OF[status], `${code} is not a ${CLASS_OF[status]?.name}`);
  }
});
