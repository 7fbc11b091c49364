/**
 * Who may use a real CA process: foreign `Host` and `Origin` headers are
 * refused (DNS rebinding, cross-site pages), and a CA listening beyond loopback
 * wants the token on every route but the CA certificate and the CRL. Each test
 * also checks that the refused request really changed nothing.
 */
import assert from "node:assert/strict";
import { Harness, run } from "../fixtures/harness.ts";
import { assertError, call, listCertificates, type Reply } from "../fixtures/ca_helpers.ts";

/** One request through curl, so `Host` is sent exactly as given. */
async function curl(url: string, args: string[]): Promise<Reply> {
  const out = await run("curl", ["-s", "-i", ...args, url]);
  const [head, ...rest] = out.stdout.split("\r\n\r\n");
  const [statusLine, ...fields] = head.split("\r\n");
  const headers = new Headers();
  for (const f of fields) {
    const at = f.indexOf(":");
    headers.append(f.slice(0, at).trim(), f.slice(at + 1).trim());
  }
  return { status: Number(statusLine.split(" ")[1]), headers, text: rest.join("\r\n\r\n") };
}

Deno.test("CA refuses a request whose Host is not a loopback name with 403", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const evil = ["-H", "Host: evil.example"];

  assertError(
    await curl(`${ca.url}/api/certificates/root`, [...evil, "-X", "POST"]),
    403,
    "foreign_host",
  );
  assertError(await curl(`${ca.url}/api/certificates/ca`, evil), 403, "foreign_host");
  assertError(await curl(`${ca.url}/api/certificates`, evil), 403, "foreign_host");
  assertError(
    await curl(`${ca.url}/api/certificates/root`, ["-H", "Host: 127.0.0.1.evil.example"]),
    403,
    "foreign_host",
  );
  assert.deepEqual(await listCertificates(ca.url), []);

  // Loopback names do pass.
  for (const host of [`localhost:${ca.port}`, `127.0.0.1:${ca.port}`, `[::1]:${ca.port}`]) {
    const ok = await curl(`${ca.url}/api/certificates/ca`, ["-H", `Host: ${host}`]);
    assert.equal(ok.status, 200, `${host}: ${ok.text}`);
  }
});

Deno.test("CA refuses a request with a foreign Origin with 403", async () => {
  await using h = new Harness();
  const ca = await h.startCa();

  for (const origin of ["http://evil.example", "null", "http://127.0.0.1:1"]) {
    assertError(
      await call(`${ca.url}/api/certificates/root`, { method: "POST", headers: { origin } }),
      403,
      "foreign_origin",
    );
  }
  assertError(
    await curl(`${ca.url}/api/certificates/ca`, ["-H", "Origin: http://evil.example"]),
    403,
    "foreign_origin",
  );
  assert.deepEqual(await listCertificates(ca.url), []);

  // The CA's own origin passes.
  const own = await call(`${ca.url}/api/certificates/root`, {
    method: "POST",
    headers: { origin: ca.url },
  });
  assert.equal(own.status, 201, own.text);
});

Deno.test("CA listening beyond loopback answers 401 without the token except for the CA certificate and CRL", async () => {
  await using h = new Harness();
  const ca = await h.startCa({ args: ["--listen=0.0.0.0:0"] });
  assert.match(String(ca.logs.find((l) => l.msg === "listening")?.addr), /^0\.0\.0\.0:\d+$/);
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const auth = { authorization: `Bearer ${token}` };

  const caPem = await call(`${ca.url}/api/certificates/ca`);
  assert.equal(caPem.status, 200);
  assert.match(caPem.text, /^-----BEGIN CERTIFICATE-----/);
  const crl = await call(`${ca.url}/api/crl`);
  assert.equal(crl.status, 200);
  assert.match(crl.text, /^-----BEGIN X509 CRL-----/);

  const denied: [string, string][] = [
    ["POST", "/api/certificates/root"],
    ["GET", "/api/certificates/root"],
    ["DELETE", "/api/certificates/root"],
    ["GET", "/api/certificates"],
    ["GET", "/api/revocations"],
    ["POST", "/api/hub-certificates"],
    ["GET", "/api/no-such-route"],
  ];
  for (const [method, path] of denied) {
    assertError(await call(`${ca.url}${path}`, { method }), 401, "token_required");
    assertError(
      await call(`${ca.url}${path}`, {
        method,
        headers: { authorization: "Bearer not-the-token" },
      }),
      401,
      "token_required",
    );
  }
  // The refused POST made nothing.
  assertError(
    await call(`${ca.url}/api/certificates/root`, { headers: auth }),
    404,
    "unknown_certificate",
  );
  assert.deepEqual(await listCertificates(ca.url, auth), []);

  // With the token the API works, from any Host name.
  const key = await call(`${ca.url}/api/certificates/root`, { method: "POST", headers: auth });
  assert.equal(key.status, 201, key.text);
  const viaName = await curl(`${ca.url}/api/certificates/root`, [
    "-H",
    "Host: ca.example.com",
    "-H",
    `Authorization: Bearer ${token}`,
  ]);
  assert.equal(viaName.status, 200, viaName.text);
  assert.match(viaName.text, /^-----BEGIN CERTIFICATE-----/);
  // A foreign Origin is still refused, token or not.
  assertError(
    await call(`${ca.url}/api/certificates`, {
      headers: { ...auth, origin: "http://evil.example" },
    }),
    403,
    "foreign_origin",
  );
});
