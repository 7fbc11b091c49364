import { strictEqual } from "node:assert/strict";
import { renewalDue, renewalMessage, renewalRetryWait } from "./renewal.ts";

Deno.test("a certificate is due for renewal at two thirds of its lifetime", () => {
  strictEqual(renewalDue(1_000, 4_000), 3_000);
});

Deno.test("renewal retries double from the base, capped by a tenth of what is left", () => {
  const inADay = Date.now() + 86_400_000;
  strictEqual(renewalRetryWait(1, inADay, 1_000), 1_000);
  strictEqual(renewalRetryWait(3, inADay, 1_000), 4_000);
  strictEqual(renewalRetryWait(30, inADay, 1_000), 1_024_000);
  // Nearly expired (or expired): the base, never less.
  strictEqual(renewalRetryWait(5, Date.now() - 1, 2_000), 2_000);
});

Deno.test("the renewal's signed text is its version tag, serial, time and trimmed CSR", () => {
  strictEqual(
    new TextDecoder().decode(renewalMessage("5f", "2026-01-01T00:00:00Z", "\nCSR\n")),
    "ztm-renew-v1\n5f\n2026-01-01T00:00:00Z\nCSR",
  );
});
