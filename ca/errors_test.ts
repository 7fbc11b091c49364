import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { BadRequest, Forbidden, NotFound, SHARED_ERRORS } from "@ztm/shared/errors";
import { CA_ERRORS, caError } from "./errors.ts";

Deno.test("the CA's codes are snake_case with an error status, and a code shared/ also raises has its status", () => {
  for (const [code, status] of Object.entries(CA_ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), code);
    for (const s of [status].flat()) assert(s >= 400 && s < 600, `${code}: ${s}`);
    if (code in SHARED_ERRORS) {
      assertEquals(status, SHARED_ERRORS[code as keyof typeof SHARED_ERRORS], code);
    }
  }
});

Deno.test("caError makes the class of the code's status", () => {
  assert(caError("unknown_certificate", 'Unknown certificate "x"') instanceof NotFound);
  assert(caError("csr_name_mismatch", 400, "other name") instanceof BadRequest);
  assert(caError("csr_name_mismatch", 403, "other name") instanceof Forbidden);
});
