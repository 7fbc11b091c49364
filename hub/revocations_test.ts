/**
 * Following the CA's revocations, against a stand-in CA on a loopback HTTP
 * port that serves CRLs signed by a test CA: a verified CRL is applied and
 * kept 0600, the feed's serials are refused before a CRL lists them, a
 * rollback or a CRL of another CA is an alarm that leaves the held CRL in
 * force, and so is an unreachable CA.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createCrl, type Serial } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { eventually } from "../tests/fixtures/harness.ts";
import { deadUrl, StandInCa } from "../tests/fixtures/stand_in_ca.ts";
import { newCa, type TestCa } from "../tests/fixtures/test_pki.ts";
import { RevocationFollower } from "./revocations.ts";

function crl(ca: TestCa, number: number, serials: string[] = []): Promise<string> {
  const revokedAt = new Date();
  return createCrl(ca, serials.map((s) => ({ serial: s as Serial, revokedAt })), { number });
}

/** A stand-in CA's revocation routes: a long-polled feed and the CRL, as the test sets them. */
class RevocationCa implements AsyncDisposable {
  seq = 0;
  crl = "";
  #entries: { seq: number; value: unknown }[] = [];
  #waiters = new Set<() => void>();
  #ca = new StandInCa({
    "GET /api/crl": () => new Response(this.crl),
    "GET /api/revocations": (req) => this.#feed(new URL(req.path, "http://ca").searchParams),
  });
  readonly url = this.#ca.url;

  /** `GET /api/crl` answered so far. */
  get crlServed(): number {
    return this.#ca.requestsTo("GET /api/crl").length;
  }

  /** Moves the feed on, naming `values` (revocations as the CA writes them, or junk). */
  publish(...values: unknown[]): void {
    this.seq++;
    for (const value of values) this.#entries.push({ seq: this.seq, value });
    for (const wake of this.#waiters) wake();
  }

  async #feed(query: URLSearchParams): Promise<Response> {
    const since = Number(query.get("since"));
    if (Number(query.get("wait")) > 0 && since === this.seq) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
      });
    }
    const revocations = this.#entries.filter((e) => e.seq > since).map((e) => e.value);
    return Response.json({ seq: this.seq, revocations });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const wake of this.#waiters) wake();
    await this.#ca[Symbol.asyncDispose]();
  }
}

async function follower(caUrl: string, caPem: string) {
  const dir = await Deno.makeTempDir({ prefix: "ztm-revocations-" });
  const logs: Record<string, unknown>[] = [];
  const updates: { revoked: string[]; crlNumber?: number }[] = [];
  const f = new RevocationFollower({
    caUrl,
    caPem,
    crlFile: join(dir, "crl.pem"),
    log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }),
    onUpdate: (revoked, crlNumber) => updates.push({ revoked: [...revoked].sort(), crlNumber }),
  });
  return {
    f,
    logs,
    updates,
    crlFile: join(dir, "crl.pem"),
    async [Symbol.asyncDispose]() {
      await f.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a verified CRL from the CA is applied, kept 0600 on disk, and its serials refused", async () => {
  const ca = await newCa();
  await using standIn = new RevocationCa();
  standIn.crl = await crl(ca, 1, ["0a", "00ff"]);
  await using r = await follower(standIn.url, ca.pem);
  await r.f.start();
  assert.deepEqual(r.updates, [{ revoked: ["a", "ff"], crlNumber: 1 }]);
  assert.equal(r.f.isRevoked("0A"), true, "serials compare normalized");
  assert.equal(r.f.isRevoked("ff"), true);
  assert.equal(r.f.isRevoked("0b"), false);
  assert.equal(r.f.crlNumber(), 1);
  assert.equal(r.f.crlPem(), standIn.crl);
  assert.equal(await Deno.readTextFile(r.crlFile), standIn.crl);
  assert.equal((await Deno.stat(r.crlFile)).mode! & 0o777, 0o600);
  const status = r.f.status();
  assert.deepEqual({ ...status, crlAgeSeconds: undefined }, {
    caReachable: true,
    crlNumber: 1,
    crlAgeSeconds: undefined,
    lastError: null,
    alarm: null,
  });
  standIn.crl = await crl(ca, 2, ["0a", "0b"]);
  standIn.publish({ serial: "0b" });
  await eventually(() => r.f.crlNumber() === 2, 5_000, "CRL 2 applied");
  assert.equal(r.f.isRevoked("0b"), true);
  assert.equal(await Deno.readTextFile(r.crlFile), standIn.crl);
});

Deno.test("serials the feed names are refused at once, before any CRL lists them; malformed ones are ignored", async () => {
  const ca = await newCa();
  await using standIn = new RevocationCa();
  standIn.crl = await crl(ca, 1);
  await using r = await follower(standIn.url, ca.pem);
  await r.f.start();
  standIn.publish(
    { serial: "00BEEF" },
    { serial: "zz" },
    { serial: 5 },
    "beef01",
    { serial: "a".repeat(65) },
  );
  await eventually(() => r.updates.length === 2, 5_000, "the feed's word");
  assert.deepEqual(r.updates[1], { revoked: ["beef"], crlNumber: undefined });
  assert.equal(r.f.isRevoked("beef"), true);
  assert.equal(r.f.crlNumber(), 1, "the CRL has not moved");
  // Once a verified CRL lists it, the feed's word is no longer needed: a later CRL decides.
  standIn.crl = await crl(ca, 2, ["beef"]);
  standIn.publish();
  await eventually(() => r.f.crlNumber() === 2, 5_000, "CRL 2 applied");
  standIn.crl = await crl(ca, 3);
  standIn.publish();
  await eventually(() => r.f.crlNumber() === 3, 5_000, "CRL 3 applied");
  assert.equal(r.f.isRevoked("beef"), false);
});

Deno.test("an older CRL than the one held is an alarm, logged once however often it comes, and the held CRL stays", async () => {
  const ca = await newCa();
  await using standIn = new RevocationCa();
  standIn.crl = await crl(ca, 5, ["0a"]);
  await using r = await follower(standIn.url, ca.pem);
  await r.f.start();
  standIn.crl = await crl(ca, 4);
  standIn.publish();
  await eventually(() => r.f.status().alarm, 5_000, "the rollback alarm");
  assert.equal(r.f.status().alarm, "CA served CRL number 4, older than 5 held");
  const served = standIn.crlServed;
  await eventually(() => standIn.crlServed > served, 5_000, "the CRL asked for again");
  assert.equal(r.f.crlNumber(), 5);
  assert.equal(r.f.isRevoked("0a"), true);
  assert.equal(r.f.status().caReachable, true, "a refused CRL is no outage");
  const errors = r.logs.filter((l) => l.level === "error");
  assert.deepEqual(errors.map((l) => l.msg), ["crl refused"]);
});

Deno.test("a CRL the CA's key did not sign is an alarm; the cached CRL stays in force until a good one comes", async () => {
  const ca = await newCa();
  await using standIn = new RevocationCa();
  standIn.crl = await crl(await newCa(), 9);
  await using r = await follower(standIn.url, ca.pem);
  await Deno.writeTextFile(r.crlFile, await crl(ca, 5, ["0a"]));
  await r.f.start();
  assert.match(r.f.status().alarm ?? "", /^CRL from the CA refused: /);
  assert.equal(r.f.crlNumber(), 5);
  assert.equal(r.f.isRevoked("0a"), true);
  assert.ok(r.logs.some((l) => l.level === "error" && l.msg === "crl refused"));
  standIn.crl = await crl(ca, 6);
  standIn.publish();
  await eventually(() => r.f.crlNumber() === 6, 5_000, "CRL 6 applied");
  assert.equal(r.f.status().alarm, null);
  assert.equal(r.f.isRevoked("0a"), false);
});

Deno.test("while the CA is unreachable the cached CRL stays in force; a cache of another CA is an alarm", async () => {
  const ca = await newCa();
  const down = deadUrl();
  {
    await using r = await follower(down, ca.pem);
    await Deno.writeTextFile(r.crlFile, await crl(ca, 7, ["0c"]));
    await r.f.start();
    assert.equal(r.f.isRevoked("0c"), true);
    assert.equal(r.f.crlNumber(), 7);
    const status = r.f.status();
    assert.equal(status.caReachable, false);
    assert.equal(typeof status.lastError, "string");
    assert.equal(status.alarm, null);
    assert.ok(r.logs.some((l) => l.msg === "ca unreachable; keeping the last crl"));
  }
  {
    await using r = await follower(down, ca.pem);
    await Deno.writeTextFile(r.crlFile, await crl(await newCa(), 8, ["0c"]));
    await r.f.start();
    assert.equal(r.f.isRevoked("0c"), false);
    assert.match(r.f.status().alarm ?? "", /^cached CRL refused: /);
    assert.equal(r.f.crlPem(), undefined);
  }
});
