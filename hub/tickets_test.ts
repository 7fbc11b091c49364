/**
 * Tickets of the data port: 256 random bits, spent once, dead after their
 * lifetime, and voided with their pair, their session or their certificate.
 */
import assert from "node:assert/strict";
import { type TicketGrant, Tickets } from "./tickets.ts";

const grant = (sid: string, serial = "0a"): TicketGrant => ({
  sid,
  side: "caller",
  endpoint: `ep-${sid}`,
  serial,
});

Deno.test("a ticket is 256 random bits in hex, claimed once for its grant and owner", () => {
  const tickets = new Tickets(1_000);
  const owner = {};
  const t = tickets.mint(grant("p1"), owner);
  assert.match(t, /^[0-9a-f]{64}$/);
  assert.notEqual(tickets.mint(grant("p1"), owner), t);
  assert.equal(tickets.size, 2);
  const claimed = tickets.claim(t);
  assert.deepEqual(claimed, { ...grant("p1"), owner });
  assert.equal(claimed!.owner, owner);
  assert.equal(tickets.claim(t), undefined, "a spent ticket is gone");
  assert.equal(tickets.claim("00".repeat(32)), undefined);
  assert.equal(tickets.size, 1);
});

Deno.test("a ticket claimed after its lifetime grants nothing and is spent anyway", () => {
  const tickets = new Tickets(1_000);
  const t = tickets.mint(grant("p1"), {}, 5_000);
  assert.equal(tickets.claim(t, 6_001), undefined);
  assert.equal(tickets.size, 0);
  const u = tickets.mint(grant("p2"), {}, 5_000);
  assert.equal(tickets.claim(u, 6_000)?.sid, "p2", "valid up to its last millisecond");
});

Deno.test("tickets are voided by pair, by owner session and by revoked serial, sparing the rest", () => {
  const tickets = new Tickets(1_000);
  const alice = {}, bob = {};
  const a1 = tickets.mint(grant("p1", "0a"), alice);
  const b1 = tickets.mint({ ...grant("p1", "0b"), side: "provider" }, bob);
  const a2 = tickets.mint(grant("p2", "0a"), alice);
  const b3 = tickets.mint(grant("p3", "0b"), bob);
  const c4 = tickets.mint(grant("p4", "0c"), {});
  tickets.voidPair("p1");
  assert.equal(tickets.claim(a1), undefined);
  assert.equal(tickets.claim(b1), undefined);
  assert.equal(tickets.size, 3);
  tickets.voidOwner(alice);
  assert.equal(tickets.claim(a2), undefined);
  tickets.voidSerials(new Set(["0b"]));
  assert.equal(tickets.claim(b3), undefined);
  assert.equal(tickets.claim(c4)?.sid, "p4");
});

Deno.test("past 10,000 live tickets, minting sweeps the expired ones", () => {
  const tickets = new Tickets(1_000);
  for (let i = 0; i <= 10_000; i++) tickets.mint(grant(`p${i}`), {}, 0);
  const fresh = tickets.mint(grant("late"), {}, 500);
  assert.equal(tickets.size, 10_002, "none had expired at 500 ms");
  tickets.mint(grant("later"), {}, 1_001);
  assert.equal(tickets.size, 2, "the 10,001 minted at 0 expired at 1,000 ms");
  assert.equal(tickets.claim(fresh, 1_001)?.sid, "late");
});
