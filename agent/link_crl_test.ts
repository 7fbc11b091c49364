import assert from "node:assert/strict";
import { join } from "node:path";
import type { ServerHttp2Stream } from "node:http2";
import { createCrl, type Serial } from "@ztm/shared/certs";
import { verifyCrl } from "@ztm/shared/crl";
import { Logger } from "@ztm/shared/log";
import { RefusalLog } from "@ztm/shared/refusal_log";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { LinkCrl, type LinkCrlOptions } from "./link_crl.ts";
import type { MeshConfig } from "./runtime.ts";
import { H2Pair } from "../tests/fixtures/h2_pair.ts";
import { newCa, type TestCa } from "../tests/fixtures/test_pki.ts";
import { eventually } from "../tests/fixtures/harness.ts";

const WAIT_MS = 10_000;

/** A CRL of `ca` numbered `number` revoking `serials`. */
function crlOf(ca: TestCa, number: number, serials: string[] = []): Promise<string> {
  return createCrl(
    ca,
    serials.map((s) => ({ serial: s as Serial, revokedAt: new Date() })),
    { number },
  );
}

/** A hub (the pair's server) serving `crl.pem` the way a hub does: 204 when the agent has it. */
function serveCrl(pair: H2Pair, crl: { pem?: string; number: number; status?: number }) {
  pair.onRequest = (stream: ServerHttp2Stream, headers) => {
    const url = new URL(String(headers[":path"]), "https://hub");
    if (url.pathname !== HUB_PATHS.crl) throw new Error(`unexpected ${url.pathname}`);
    const after = url.searchParams.get("after");
    const status = crl.status ??
      (!crl.pem ? 503 : after && Number(after) >= crl.number ? 204 : 200);
    stream.respond({ ":status": status });
    stream.end(status === 200 ? crl.pem : "");
  };
}

/** A LinkCrl of a mesh of `ca` over the pair's session; its log lines and refusals kept. */
function linkCrl(ca: TestCa, pair: H2Pair | undefined, opts: Partial<LinkCrlOptions> = {}) {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) });
  const refusals = new RefusalLog(log, "bad message from hub", { mesh: "home" });
  const told: number[] = [];
  let fetched = 0;
  const crl = new LinkCrl({
    config: { name: "home", ca: ca.pem } as MeshConfig,
    log,
    refusals,
    session: () => pair?.session,
    fetched: () => fetched++,
    onCrl: (_revoked, c) => told.push(c.number),
    ...opts,
  });
  return { crl, lines, refusals, told, fetched: () => fetched };
}

Deno.test("a CRL the mesh CA signed is fetched, kept, written 0600 and told; then only a newer one is asked for", async () => {
  await using pair = await H2Pair.start();
  const dir = Deno.makeTempDirSync();
  try {
    const crlFile = join(dir, "home.crl");
    const pem = await crlOf(pair.ca, 3, ["0A1B", "ff"]);
    serveCrl(pair, { pem, number: 3 });
    const l = linkCrl(pair.ca, pair, { crlFile });
    assert.equal(l.crl.number(), -1);
    assert.equal(l.crl.has("a1b"), false);

    await l.crl.fetch(pair.session);
    assert.equal(l.crl.number(), 3);
    assert.equal(l.crl.has("a1b"), true);
    assert.deepEqual([...l.crl.revoked()].sort(), ["a1b", "ff"]);
    assert.equal(l.crl.alarm(), null);
    assert.deepEqual(l.told, [3]);
    assert.equal(Deno.readTextFileSync(crlFile), pem);
    assert.equal(Deno.statSync(crlFile).mode! & 0o777, 0o600);

    // The hub has nothing newer: 204, and nothing changes.
    await l.crl.fetch(pair.session);
    assert.deepEqual(pair.paths, [HUB_PATHS.crl, `${HUB_PATHS.crl}?after=3`]);
    assert.equal(l.crl.number(), 3);
    assert.deepEqual(l.told, [3]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a hub with no CRL yet (503) changes nothing; any other refusal throws", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  serveCrl(pair, { number: 0 });
  await l.crl.fetch(pair.session);
  assert.equal(l.crl.number(), -1);
  serveCrl(pair, { number: 0, status: 500 });
  await assert.rejects(l.crl.fetch(pair.session), /hub answered 500 for the CRL/);
  assert.equal(l.crl.number(), -1);
  assert.equal(l.crl.alarm(), null);
});

Deno.test("a CRL that does not verify raises the alarm and is not kept; the next good one clears it", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  const other = await newCa();
  serveCrl(pair, { pem: await crlOf(other, 9, ["1"]), number: 9 });
  await assert.rejects(l.crl.fetch(pair.session), /signature does not verify/);
  assert.match(l.crl.alarm() ?? "", /^CRL from the hub refused: .*signature does not verify/);
  assert.equal(l.crl.number(), -1);
  assert.ok(l.lines.some((line) => line.msg === "crl refused" && line.level === "error"));

  serveCrl(pair, { pem: "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", number: 9 });
  await assert.rejects(l.crl.fetch(pair.session), /CRL does not parse/);
  assert.equal(l.crl.number(), -1);

  serveCrl(pair, { pem: await crlOf(pair.ca, 2), number: 2 });
  await l.crl.fetch(pair.session);
  assert.equal(l.crl.alarm(), null);
  assert.equal(l.crl.number(), 2);
});

Deno.test("an older CRL never rolls back a newer one, from the hub or another link", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  const newer = await verifyCrl(await crlOf(pair.ca, 5, ["abc"]), pair.ca.pem);
  const older = await verifyCrl(await crlOf(pair.ca, 4), pair.ca.pem);
  l.crl.adopt(newer, false);
  l.crl.adopt(older, false);
  l.crl.adopt(newer, false);
  assert.equal(l.crl.number(), 5);
  assert.equal(l.crl.has("abc"), true);
  assert.deepEqual(l.told, [5]);
  assert.ok(l.lines.some((line) => line.msg === "older crl ignored" && line.crl === 4));

  // A lagging (or revoked) hub serving its older CRL whatever was asked.
  serveCrl(pair, { pem: older.pem, number: 4, status: 200 });
  await l.crl.fetch(pair.session);
  assert.equal(l.crl.number(), 5);
  assert.equal(l.crl.has("abc"), true);
});

Deno.test("the CRL kept in crlFile is loaded at start; one that does not verify raises the alarm", async () => {
  const ca = await newCa();
  const dir = Deno.makeTempDirSync();
  try {
    const crlFile = join(dir, "home.crl");
    const none = linkCrl(ca, undefined, { crlFile });
    none.crl.load();
    await none.crl.loaded;
    assert.equal(none.crl.number(), -1);
    assert.equal(none.crl.alarm(), null);

    Deno.writeTextFileSync(crlFile, await crlOf(ca, 7, ["77"]));
    const kept = linkCrl(ca, undefined, { crlFile });
    kept.crl.load();
    await kept.crl.loaded;
    assert.equal(kept.crl.number(), 7);
    assert.equal(kept.crl.has("77"), true);

    Deno.writeTextFileSync(crlFile, await crlOf(await newCa(), 8, []));
    const bad = linkCrl(ca, undefined, { crlFile });
    bad.crl.load();
    await bad.crl.loaded;
    assert.equal(bad.crl.number(), -1);
    assert.match(bad.crl.alarm() ?? "", /^stored CRL refused: /);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an adopted CRL is written only when saving and when the link set says so", async () => {
  const ca = await newCa();
  const dir = Deno.makeTempDirSync();
  try {
    const crlFile = join(dir, "home.crl");
    const asked: number[] = [];
    const l = linkCrl(ca, undefined, {
      crlFile,
      shouldSaveCrl: (n) => (asked.push(n), n !== 2),
    });
    l.crl.adopt(await verifyCrl(await crlOf(ca, 1), ca.pem), false);
    assert.deepEqual(asked, []);
    assert.equal(Deno.statSync(dir).isDirectory && [...Deno.readDirSync(dir)].length, 0);
    l.crl.adopt(await verifyCrl(await crlOf(ca, 2), ca.pem), true);
    assert.deepEqual(asked, [2]);
    assert.equal([...Deno.readDirSync(dir)].length, 0);
    const third = await verifyCrl(await crlOf(ca, 3), ca.pem);
    l.crl.adopt(third, true);
    assert.equal(Deno.readTextFileSync(crlFile), third.pem);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("announced CRLs are fetched one at a time, only when newer, and the newest announced is caught up", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  const crls = new Map<number, string>();
  for (const n of [5, 6, 7]) crls.set(n, await crlOf(pair.ca, n));
  // The hub holds its first answer until told, as if the CA were slow.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let serving = 5;
  pair.onRequest = (stream) => {
    const number = serving;
    held.then(() => {
      stream.respond({ ":status": 200 });
      stream.end(crls.get(number));
    });
  };
  l.crl.announce(5);
  await eventually(() => pair.paths.length === 1, WAIT_MS, "the first fetch");
  l.crl.announce(6);
  l.crl.announce(7);
  serving = 7;
  release();
  await eventually(() => l.fetched() === 2, WAIT_MS, "the catch-up fetch");
  assert.equal(l.crl.number(), 7);
  assert.deepEqual(l.told, [5, 7]);
  assert.deepEqual(pair.paths, [HUB_PATHS.crl, `${HUB_PATHS.crl}?after=5`]);

  // Announcements of what is held (or older, or not a number) ask nothing.
  l.crl.announce(7);
  l.crl.announce(3);
  l.crl.announce(Number.NaN);
  l.crl.announce(2 ** 60);
  // Let any fetch those would have started reach the hub.
  serving = 7;
  const probe = await crlOf(pair.ca, 8);
  crls.set(8, probe);
  l.crl.announce(8);
  serving = 8;
  await eventually(() => l.fetched() === 3, WAIT_MS, "the fetch of 8");
  assert.deepEqual(pair.paths, [
    HUB_PATHS.crl,
    `${HUB_PATHS.crl}?after=5`,
    `${HUB_PATHS.crl}?after=7`,
  ]);
  assert.equal(l.crl.number(), 8);
});

Deno.test("an announced CRL that does not verify is counted as a refusal and raises the alarm", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  serveCrl(pair, { pem: await crlOf(await newCa(), 4), number: 4 });
  l.crl.announce(4);
  await eventually(() => l.refusals.total === 1, WAIT_MS, "the refusal");
  assert.deepEqual(l.refusals.counts(), { bad_crl: 1 });
  assert.equal(l.fetched(), 0);
  assert.match(l.crl.alarm() ?? "", /CRL from the hub refused/);
  assert.equal(l.crl.number(), -1);
  assert.ok(l.lines.some((line) => line.msg === "bad message from hub" && line.code === "bad_crl"));

  // Without a session nothing is asked.
  const alone = linkCrl(pair.ca, undefined);
  alone.crl.announce(4);
  assert.equal(pair.paths.length, 1);
});

Deno.test("a hub announcing a CRL it never serves is asked once per announcement, not in a loop", async () => {
  await using pair = await H2Pair.start();
  const l = linkCrl(pair.ca, pair);
  // First a CRL of another CA, then 503s: each failed fetch leaves the announced number above
  // the one held, which once made LinkCrl ask again at once, without end.
  serveCrl(pair, { pem: await crlOf(await newCa(), 4), number: 4 });
  l.crl.announce(4);
  await eventually(() => l.refusals.total === 1, WAIT_MS, "the refused CRL");
  serveCrl(pair, { number: 5, status: 503 });
  l.crl.announce(5);
  await eventually(() => pair.paths.length === 2, WAIT_MS, "the fetch of 5");
  // The next announcement is served: one more request, and the CRL is taken.
  serveCrl(pair, { pem: await crlOf(pair.ca, 6), number: 6 });
  l.crl.announce(6);
  await eventually(() => l.crl.number() === 6, WAIT_MS, "CRL 6");
  assert.equal(pair.paths.length, 3, `${pair.paths.length} requests for three announcements`);
});
