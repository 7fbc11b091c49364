/**
 * The hub renewing its own certificate while it runs, against a stand-in CA:
 * once two thirds of the lifetime have passed it gets a certificate of the
 * same key and names, saves it 0600 and hands it on; a failure is retried
 * and logged, at error level once the end is near.
 */
import assert from "node:assert/strict";
import { altNamesOf, parseCertificate, serialOf } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { eventually } from "../tests/fixtures/harness.ts";
import { signHubCsr, StandInCa } from "../tests/fixtures/stand_in_ca.ts";
import { newCa, type TestCa } from "../tests/fixtures/test_pki.ts";
import { enroll, type HubIdentity, identityFiles } from "./enroll.ts";
import { HubRenewal } from "./renew.ts";

const DAY = 24 * 3_600_000;
const HOSTS = ["hub.example", "127.0.0.1"];

/**
 * A stand-in CA and a hub identity from it whose certificate began `ageDays`
 * ago and lasts `lifetimeDays`; later certificates last a year.
 */
async function agedHub(ageDays: number, lifetimeDays: number) {
  const state: { ca: TestCa; now?: Date; lifetimeMs?: number } = {
    ca: await newCa(),
    now: new Date(Date.now() - ageDays * DAY),
    lifetimeMs: lifetimeDays * DAY,
  };
  const standIn = new StandInCa({
    "GET /api/certificates/ca": () => new Response(state.ca.pem),
    "POST /api/hub-certificates": async (req) =>
      new Response(await signHubCsr(state.ca, req.body, state)),
  });
  const dir = await Deno.makeTempDir({ prefix: "ztm-renew-" });
  const quiet = new Logger("hub", { sink: () => {} });
  const identity = await enroll({
    caUrl: standIn.url,
    dataDir: dir,
    hosts: HOSTS,
    token: "tok",
    log: quiet,
  });
  state.now = undefined;
  state.lifetimeMs = 365 * DAY;
  const logs: Record<string, unknown>[] = [];
  const renewed: HubIdentity[] = [];
  /** A renewal of the identity; `null`: without a CA token. */
  const renewal = (token: string | null = "tok") =>
    new HubRenewal({
      caUrl: standIn.url,
      dataDir: dir,
      hosts: HOSTS,
      token: token ?? undefined,
      log: new Logger("hub", { sink: (l) => logs.push(JSON.parse(l)) }),
      current: identity,
      onRenewed: (next) => {
        renewed.push(next);
      },
    });
  return {
    standIn,
    dir,
    identity,
    logs,
    renewed,
    renewal,
    posts: () => standIn.requestsTo("POST /api/hub-certificates").length,
    async [Symbol.asyncDispose]() {
      await standIn[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a certificate two thirds through its life is renewed: same key and names, saved 0600, handed on", async () => {
  await using hub = await agedHub(9, 12);
  const renewal = hub.renewal();
  renewal.start();
  try {
    await eventually(() => renewal.renewals === 1, 5_000, "the renewal");
  } finally {
    renewal.close();
  }
  assert.equal(hub.renewed.length, 1);
  const next = hub.renewed[0];
  assert.equal(next.keyPem, hub.identity.keyPem);
  assert.equal(next.caPem, hub.identity.caPem);
  const [old, fresh] = [hub.identity.certPem, next.certPem].map(parseCertificate);
  assert.notEqual(serialOf(fresh), serialOf(old));
  assert.deepEqual(fresh.publicKey.rawData, old.publicKey.rawData);
  assert.deepEqual(altNamesOf(fresh), HOSTS);
  const file = identityFiles(hub.dir).cert;
  assert.equal(await Deno.readTextFile(file), next.certPem);
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  assert.equal(
    hub.standIn.requestsTo("POST /api/hub-certificates").at(-1)!.authorization,
    "Bearer tok",
  );
  const line = hub.logs.find((l) => l.msg === "hub certificate renewed");
  assert.deepEqual([line?.serial, line?.previous], [serialOf(fresh), serialOf(old)]);
});

Deno.test("a failed renewal is logged at warn and retried; it succeeds once the CA answers", async () => {
  await using hub = await agedHub(9, 12);
  const sign = hub.standIn.routes["POST /api/hub-certificates"];
  hub.standIn.routes["POST /api/hub-certificates"] = () => new Response("busy", { status: 503 });
  const renewal = hub.renewal();
  renewal.start();
  try {
    await eventually(() => hub.logs.length > 0, 5_000, "the failure logged");
    assert.deepEqual(hub.logs.map((l) => [l.level, l.msg, l.err]), [
      ["warn", "hub certificate renewal failed; retrying", "the CA answered 503: busy"],
    ]);
    assert.equal(hub.renewed.length, 0);
    hub.standIn.routes["POST /api/hub-certificates"] = sign;
    await eventually(() => renewal.renewals === 1, 5_000, "the retry");
  } finally {
    renewal.close();
  }
  assert.equal(hub.posts(), 3, "the enrollment's, the failed one, the retry");
});

Deno.test("a renewal failing with under a tenth of the lifetime left is logged at error; without a token it cannot begin", async () => {
  {
    await using hub = await agedHub(11, 12);
    hub.standIn.routes["POST /api/hub-certificates"] = () => new Response("no", { status: 500 });
    const renewal = hub.renewal();
    renewal.start();
    try {
      await eventually(() => hub.logs.length > 0, 5_000, "the failure logged");
    } finally {
      renewal.close();
    }
    assert.equal(hub.logs[0].level, "error");
    assert.equal(hub.logs[0].msg, "hub certificate renewal keeps failing; it expires soon");
  }
  {
    await using hub = await agedHub(9, 12);
    const renewal = hub.renewal(null);
    renewal.start();
    try {
      await eventually(() => hub.logs.length > 0, 5_000, "the failure logged");
    } finally {
      renewal.close();
    }
    assert.match(String(hub.logs[0].err), /^no CA token/);
    assert.equal(hub.posts(), 1, "only the enrollment's");
    assert.equal(await Deno.readTextFile(identityFiles(hub.dir).cert), hub.identity.certPem);
  }
});
