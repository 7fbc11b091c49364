/**
 * `caExpiry` at the edges of its year of warning: nothing before it, a
 * count of days inside it, and a plain statement once the CA has expired.
 */
import assert from "node:assert/strict";
import { CA_EXPIRY_WARNING_MS, caExpiry } from "./ca_expiry.ts";

const DAY = 86_400_000;
const END = new Date("2030-06-15T12:00:00.000Z");

Deno.test("caExpiry says nothing while more than a year is left", () => {
  assert.equal(CA_EXPIRY_WARNING_MS, 365 * DAY);
  for (const left of [CA_EXPIRY_WARNING_MS, CA_EXPIRY_WARNING_MS + 1, 10 * 365 * DAY]) {
    const e = caExpiry(END, END.getTime() - left);
    assert.equal(e.warning, null, `${left} ms left`);
    assert.equal(e.notAfter, "2030-06-15T12:00:00.000Z");
    assert.equal(e.daysLeft, Math.floor(left / DAY));
  }
});

Deno.test("caExpiry warns inside the last year with the date and whole days left", () => {
  const e = caExpiry(END, END.getTime() - CA_EXPIRY_WARNING_MS + 1);
  assert.equal(e.daysLeft, 364);
  assert.match(e.warning!, /^The mesh CA's certificate expires on 2030-06-15 \(in 364 days\): /);
  assert.match(
    e.warning!,
    /unless the CA is rotated before \(SECURITY\.md, How to rotate the CA\)$/,
  );
  assert.match(caExpiry(END, END.getTime() - DAY - 1).warning!, /\(in 1 day\)/);
  assert.match(caExpiry(END, END.getTime() - 2 * DAY).warning!, /\(in 2 days\)/);
  assert.match(caExpiry(END, END.getTime() - 1).warning!, /\(in 0 days\)/);
});

Deno.test("caExpiry says the CA has expired from its last millisecond on, with negative days", () => {
  for (const [past, days] of [[0, 0], [1, -1], [DAY, -1], [3 * DAY + 1, -4]]) {
    const e = caExpiry(END, END.getTime() + past);
    assert.match(
      e.warning!,
      /^The mesh CA's certificate expired on 2030-06-15: no certificate it issued is accepted any more; rotate the CA/,
    );
    assert.equal(e.daysLeft, days, `${past} ms past`);
  }
});
