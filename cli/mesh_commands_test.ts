/** How `ztm status` words a certificate's expiry. */
import assert from "node:assert/strict";
import { expiry } from "./mesh_commands.ts";

const NOW = Date.parse("2026-01-01T00:00:00Z");

Deno.test("expiry counts whole days left and flags a certificate close to or past its end", () => {
  assert.equal(expiry("2027-01-01T00:00:00.000Z", NOW), "expires 2027-01-01 (in 365 days)");
  assert.equal(
    expiry("2026-01-11T12:00:00.000Z", NOW),
    "expires 2026-01-11 (in 10 days) RENEW SOON",
  );
  assert.equal(expiry("2026-01-02T06:00:00.000Z", NOW), "expires 2026-01-02 (in 1 day) RENEW SOON");
  assert.equal(expiry("2025-12-31T00:00:00.000Z", NOW), "EXPIRED 2025-12-31");
});
