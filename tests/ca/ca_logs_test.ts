/**
 * What a real CA process writes to its output: JSON lines only, and never key
 * material, a CSR, a certificate body or the CA token — whatever the requests.
 */
import assert from "node:assert/strict";
import { Harness } from "../fixtures/harness.ts";
import { call, makeCsr } from "../fixtures/ca_helpers.ts";

Deno.test("CA logs never contain key material, PEM blocks or the token", async () => {
  await using h = new Harness();
  const ca = await h.startCa({ args: ["--log-level=debug"] });
  const dir = await h.tempDir();
  const token = (await Deno.readTextFile(`${ca.database}.token`)).trim();
  const auth = { authorization: `Bearer ${token}` };
  const secrets: string[] = [token];

  // Every kind of request, good and bad, with key material in bodies and answers.
  const key = await call(`${ca.url}/api/certificates/root`, { method: "POST" });
  assert.equal(key.status, 201);
  secrets.push(...key.text.split("\n").filter((l) => l && !l.startsWith("-----")));
  const { csr, keyPath } = await makeCsr(dir, "alice", { cn: "alice" });
  assert.equal(
    (await call(`${ca.url}/api/certificates/alice`, { method: "POST", body: csr })).status,
    201,
  );
  const userKey = await Deno.readTextFile(keyPath);
  secrets.push(...userKey.split("\n").filter((l) => l && !l.startsWith("-----")));
  const hub = await makeCsr(dir, "hub", { cn: "hub1", altNames: "DNS:hub.example.com" });
  assert.equal(
    (await call(`${ca.url}/api/hub-certificates`, { method: "POST", body: hub.csr, headers: auth }))
      .status,
    201,
  );
  await call(`${ca.url}/api/hub-certificates`, {
    method: "POST",
    body: hub.csr,
    headers: { authorization: `Bearer ${token.slice(0, -1)}x` },
  });
  await call(`${ca.url}/api/certificates/bob`, { method: "POST", body: userKey });
  await call(`${ca.url}/api/certificates/bob`, { method: "POST", body: csr });
  await call(`${ca.url}/api/certificates/bob`, {
    method: "POST",
    body: csr.replace("MII", "MIJ"),
  });
  await call(`${ca.url}/api/certificates/root`, { method: "POST" });
  await call(`${ca.url}/api/certificates/root`, { method: "POST", body: "x".repeat(20_000) });
  await call(`${ca.url}/api/certificates/root`, { method: "DELETE" });
  await call(`${ca.url}/api/crl`);
  await call(`${ca.url}/api/revocations?since=0`);
  await call(`${ca.url}/api/certificates`, { headers: { origin: "http://evil.example" } });

  const status = await ca.stop();
  assert.equal(status.code, 0);
  assert.ok(ca.raw.length >= 10, ca.tail());
  for (const line of ca.raw) {
    const parsed = JSON.parse(line);
    assert.equal(parsed.component, "ca", line);
    assert.equal(typeof parsed.msg, "string", line);
    for (const banned of ["PRIVATE KEY", "BEGIN", "END CERTIFICATE", ...secrets]) {
      assert.ok(!line.includes(banned), `log line holds "${banned.slice(0, 20)}…": ${line}`);
    }
  }
  // The log still says what happened, by serial and status.
  const msgs = ca.logs.map((l) => l.msg);
  for (const m of ["ca created", "listening", "certificate issued", "hub certificate issued"]) {
    assert.ok(msgs.includes(m), `no "${m}" line`);
  }
  assert.ok(msgs.includes("certificate revoked") && msgs.includes("stopping"));
  const statuses = ca.logs.filter((l) => l.msg === "request").map((l) => l.status);
  for (const s of [200, 201, 400, 401, 403, 409, 413]) assert.ok(statuses.includes(s), `${s}`);
});
