import assert from "node:assert/strict";
import {
  certificatePem,
  checkCsr,
  commonNameOf,
  issueLeafCertificate,
  parseCertificate,
  publicKeyHex,
  serialOf,
} from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { peerName } from "@ztm/shared/peer_protocol";
import { HUB_PATHS } from "@ztm/shared/protocol";
import { renewalDue, renewalMessage } from "@ztm/shared/renewal";
import { HubLink } from "./hub_link.ts";
import { Renewal } from "./renew.ts";
import type { MeshRuntime } from "./runtime.ts";
import { RogueHub } from "../tests/fixtures/rogue_hub.ts";
import { newCa, newLeaf, type TestCa } from "../tests/fixtures/test_pki.ts";
import { memberConfig, memberHello } from "../tests/fixtures/member_config.ts";
import { eventually } from "../tests/fixtures/harness.ts";

const DAY = 86_400_000;
const WAIT_MS = 10_000;

/** A member certificate of `ca` issued `ageDays` ago for `days`. */
function member(ca: TestCa, ageDays: number, days = 3, name = "alice") {
  return newLeaf(ca, {
    name,
    role: "peer",
    altNames: [peerName(name)],
    now: new Date(Date.now() - ageDays * DAY),
    days,
  });
}

/**
 * A renewal of `leaf` over a real hub link to `hub`, which answers renewals with `answer`;
 * what it saved, told and logged.
 */
async function renewalVia(
  hub: RogueHub,
  leaf: { certificate: string; privateKey: string },
  answer: (body: Record<string, string>) => Promise<{ status: number; body: string }>,
) {
  const config = memberConfig(hub.ca, leaf, [hub.address]);
  const log = new Logger("agent", { sink: () => {} });
  const requests: { path: string; body: Record<string, string> }[] = [];
  hub.onRequest = (stream, headers, body) => {
    const parsed = JSON.parse(body);
    requests.push({ path: String(headers[":path"]), body: parsed });
    answer(parsed).then((a) => {
      stream.respond({ ":status": a.status, "content-type": "application/json" });
      stream.end(a.body);
    });
  };
  const link = new HubLink({
    config: { ...config },
    log,
    hello: memberHello,
    onOpen: () => {},
    onManage: () => Promise.resolve({ status: 404, body: "{}" }),
  });
  link.start();
  await link.waitConnected(WAIT_MS);
  const saved: string[] = [];
  const told: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const renewal = new Renewal({
    config,
    runtime: {
      hubRequest: (m: string, p: string, b?: string) => link.requestRaw(m, p, b),
      certificateRenewed: (pem: string) => told.push(pem),
    } as unknown as MeshRuntime,
    save: (pem) => saved.push(pem),
    log: new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) }),
  });
  return {
    config,
    renewal,
    requests,
    saved,
    told,
    lines,
    async [Symbol.asyncDispose]() {
      renewal.close();
      await link.close();
    },
  };
}

/** What a CA does with a renewal: checks the holder's signature, then signs the CSR's key. */
async function sign(
  ca: TestCa,
  body: Record<string, string>,
  current: string,
  opts: { name?: string } = {},
) {
  const cert = parseCertificate(current);
  const csr = await checkCsr(body.csr);
  const ok = await crypto.subtle.verify(
    { name: "ECDSA", hash: "SHA-256" },
    await crypto.subtle.importKey(
      "spki",
      cert.publicKey.rawData,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      [
        "verify",
      ],
    ),
    Uint8Array.fromBase64(body.signature),
    renewalMessage(body.serial, body.time, body.csr),
  );
  if (!ok || body.serial !== serialOf(cert)) {
    return {
      status: 403,
      body: JSON.stringify({ error: { code: "bad_signature", message: "Bad signature" } }),
    };
  }
  const name = opts.name ?? csr.commonName;
  const next = await issueLeafCertificate(ca, {
    commonName: name,
    publicKey: csr.publicKey,
    role: "peer",
    altNames: [peerName(name)],
    days: 3,
  });
  return { status: 201, body: JSON.stringify({ certificate: certificatePem(next) }) };
}

Deno.test("a certificate past two thirds of its life is renewed through the hub, signed by its holder", async () => {
  await using hub = await RogueHub.start();
  const leaf = await member(hub.ca, 2.2);
  await using r = await renewalVia(hub, leaf, (body) => sign(hub.ca, body, leaf.certificate));
  const old = parseCertificate(leaf.certificate);
  assert.equal(
    r.renewal.state().renewAt,
    new Date(renewalDue(old.notBefore.getTime(), old.notAfter.getTime())).toISOString(),
  );
  r.renewal.start();
  await eventually(() => r.saved.length === 1, WAIT_MS, "the renewed certificate saved");
  assert.equal(r.requests.length, 1);
  assert.equal(r.requests[0].path, HUB_PATHS.renewals);
  assert.equal(r.requests[0].body.serial, serialOf(old));
  // The new certificate is stored, put in the shared config and told to the runtime.
  const fresh = parseCertificate(r.saved[0]);
  assert.equal(r.config.certificate, r.saved[0]);
  assert.deepEqual(r.told, r.saved);
  assert.equal(publicKeyHex(fresh), publicKeyHex(old));
  assert.equal(commonNameOf(fresh), "alice");
  const state = r.renewal.state();
  assert.equal(state.renewals, 1);
  assert.equal(state.lastError, null);
  assert.ok(state.lastRenewedAt);
  assert.ok(Date.parse(state.renewAt) > Date.now(), "the next renewal is in the future");
  assert.ok(r.lines.some((l) => l.msg === "certificate renewed" && l.previous === serialOf(old)));
});

Deno.test("a renewed certificate of another CA, key or user is refused and the old one kept", async () => {
  await using hub = await RogueHub.start();
  const leaf = await member(hub.ca, 2.2);
  const other = await newCa();
  const answers: [
    string,
    (body: Record<string, string>) => Promise<{ status: number; body: string }>,
  ][] = [
    ["another CA", (body) => sign(other, body, leaf.certificate)],
    ["another user", (body) => sign(hub.ca, body, leaf.certificate, { name: "mallory" })],
    ["another key", async () => ({
      status: 201,
      body: JSON.stringify({ certificate: (await member(hub.ca, 0)).certificate }),
    })],
  ];
  for (const [what, answer] of answers) {
    await using r = await renewalVia(hub, leaf, answer);
    r.renewal.start();
    await eventually(() => r.renewal.state().lastError !== null, WAIT_MS, what);
    assert.match(
      r.renewal.state().lastError!,
      /not from the mesh CA, or not for this key and user/,
      what,
    );
    assert.deepEqual(r.saved, [], what);
    assert.equal(r.config.certificate, leaf.certificate, what);
    assert.equal(r.renewal.state().renewals, 0);
    assert.ok(r.lines.some((l) => l.msg === "certificate renewal failed; retrying"), what);
  }
});

Deno.test("a refusal by the hub is reported with its message", async () => {
  await using hub = await RogueHub.start();
  const leaf = await member(hub.ca, 2.2);
  await using r = await renewalVia(hub, leaf, () =>
    Promise.resolve({
      status: 403,
      body: JSON.stringify({
        error: { code: "certificate_revoked", message: "Certificate revoked" },
      }),
    }));
  r.renewal.start();
  await eventually(() => r.renewal.state().lastError !== null, WAIT_MS, "the failure");
  assert.equal(r.renewal.state().lastError, "the hub answered 403: Certificate revoked");
  assert.equal(r.renewal.state().warning, null, "a third of the life is still left");
});

Deno.test("renewal that keeps failing near the end says when the certificate expires, or that it has", async () => {
  const ca = await newCa();
  for (
    const [ageDays, expected] of [
      [
        2.9,
        /expires at .* and renewing it keeps failing \(this mesh cannot reach its hub for a renewal\)/,
      ],
      [4, /expired at .*; renewing it failed .*: ask for a new invite/],
    ] as const
  ) {
    const leaf = await member(ca, ageDays);
    const lines: Record<string, unknown>[] = [];
    const renewal = new Renewal({
      config: memberConfig(ca, leaf, []),
      runtime: {} as MeshRuntime,
      save: () => assert.fail("nothing to save"),
      log: new Logger("agent", { sink: (line) => lines.push(JSON.parse(line)) }),
    });
    try {
      assert.equal(renewal.state().warning, null, "no warning before a failure");
      renewal.start();
      await eventually(() => renewal.state().lastError !== null, WAIT_MS, "the failure");
      assert.match(renewal.state().warning ?? "", expected);
      assert.ok(
        lines.some((l) => l.msg === "certificate renewal keeps failing" && l.level === "error"),
      );
    } finally {
      renewal.close();
    }
  }
});
