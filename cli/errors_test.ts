import { ok as assert } from "node:assert/strict";
import { NotFound, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { CLI_ERRORS, cliError } from "./errors.ts";

Deno.test("the command line's codes are snake_case with an error status", () => {
  for (const [code, status] of Object.entries(CLI_ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), code);
    assert(status >= 400 && status < 600, `${code}: ${status}`);
  }
});

Deno.test("cliError makes the class of the code's status", () => {
  assert(cliError("no_mesh", "No mesh") instanceof NotFound);
  assert(cliError("ca_unreachable", "Cannot reach the CA") instanceof ServiceUnavailable);
  const failed = cliError("service_install_failed", "systemctl failed");
  assert(failed instanceof ZtmError && failed.status === 500);
});
