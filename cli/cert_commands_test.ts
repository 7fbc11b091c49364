/**
 * `ztm cert new|revoke|list|status` and `callCa` against a real CA in this
 * process: the files written (the key 0600), what is refused before the CA
 * is asked, and the CA's answers in words.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFound, ServiceUnavailable, ZtmError } from "@ztm/shared/errors";
import { UsageError } from "@ztm/shared/flags";
import { callCa, CERT_LIST, CERT_NEW, CERT_REVOKE, CERT_STATUS } from "./cert_commands.ts";
import { flagsOf, runCommand, startLocalCa } from "./_fixture.ts";

/** A table's rows, each split into its cells. */
function rows(text: string): string[][] {
  return text.split("\n").map((line) => line.split(/ {2,}/));
}

Deno.test("callCa takes HOST:PORT or a URL, names a CA it cannot reach, and throws the CA's refusal", async () => {
  await using local = await startLocalCa();
  const host = new URL(local.ca.url).host;
  const flags = (url: string, ...more: string[]) =>
    flagsOf(CERT_LIST, [`--ca-url=${url}`, ...more]);
  const pem = await callCa(flags(host), "GET", "/api/certificates/ca");
  assert.equal(pem, local.ca.caCertificatePem);
  assert.equal(await callCa(flags(`${local.ca.url}//`), "GET", "/api/certificates/ca"), pem);
  await assert.rejects(callCa(flags(host), "GET", "/api/certificates/nobody"), (err: Error) => {
    assert.ok(err instanceof NotFound);
    assert.equal((err as ZtmError).code, "unknown_certificate");
    assert.equal(err.message, 'Unknown certificate "nobody"');
    return true;
  });
  const missing = join(local.dir, "no.token");
  await assert.rejects(
    callCa(flags(host, `--ca-token-file=${missing}`), "GET", "/api/status"),
    (err: Error) => err.message.startsWith(`Cannot read the --ca-token-file "${missing}": `),
  );
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  free.close();
  await assert.rejects(
    callCa(flags(`127.0.0.1:${free.addr.port}`), "GET", "/api/status"),
    (err: Error) => {
      assert.ok(err instanceof ServiceUnavailable);
      assert.equal((err as ZtmError).code, "ca_unreachable");
      assert.ok(
        err.message.startsWith(`Cannot reach the CA at http://127.0.0.1:${free.addr.port}: `),
      );
      return true;
    },
  );
});

Deno.test("ztm cert refuses a bad NAME, --endpoint or --serial before it asks the CA", async () => {
  const nowhere = "--ca-url=127.0.0.1:1";
  await assert.rejects(
    runCommand(CERT_NEW, ["al/ice", nowhere]),
    new UsageError('Bad NAME "al/ice": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -'),
  );
  await assert.rejects(
    runCommand(CERT_NEW, ["alice", "--endpoint=lap top", nowhere]),
    new UsageError(
      'Bad --endpoint "lap top": use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -',
    ),
  );
  await assert.rejects(
    runCommand(CERT_REVOKE, ["alice", "--serial=xyz", nowhere]),
    new UsageError('Bad --serial "xyz": the certificate\'s hex serial number'),
  );
  await assert.rejects(
    runCommand(CERT_REVOKE, ["alice", "--serial=ab", "--endpoint=laptop", nowhere]),
    new UsageError("Give --endpoint or --serial, not both"),
  );
});

Deno.test("ztm cert new writes NAME.key 0600, NAME.crt and ca.crt, and never overwrites", async () => {
  await using local = await startLocalCa();
  const dir = join(local.dir, "out");
  Deno.mkdirSync(dir);
  const args = ["--ca-url", local.ca.url, `--dir=${dir}`];
  const said = await runCommand(CERT_NEW, ["alice", ...args]);
  const [key, crt, ca] = ["alice.key", "alice.crt", "ca.crt"].map((f) => join(dir, f));
  assert.equal(said, `Wrote ${key} (0600), ${crt} and ${ca}`);
  assert.equal(Deno.statSync(key).mode! & 0o777, 0o600);
  assert.match(Deno.readTextFileSync(key), /PRIVATE KEY/);
  assert.equal(Deno.readTextFileSync(ca), local.ca.caCertificatePem);
  assert.equal(
    Deno.readTextFileSync(crt),
    await (await fetch(`${local.ca.url}/api/certificates/alice`)).text(),
  );
  assert.ok(!said.includes("PRIVATE KEY"));

  await assert.rejects(
    runCommand(CERT_NEW, ["alice", ...args]),
    new Error(`${key} already exists; move it away or choose another --dir`),
  );
  // A device's certificate beside it; the CA certificate already there is kept.
  assert.equal(
    await runCommand(CERT_NEW, ["alice", "--endpoint=laptop", ...args]),
    `Wrote ${join(dir, "alice-laptop.key")} (0600), ${join(dir, "alice-laptop.crt")} and ${ca}`,
  );

  Deno.writeTextFileSync(ca, "-----BEGIN CERTIFICATE-----\nanother\n-----END CERTIFICATE-----\n");
  await assert.rejects(
    runCommand(CERT_NEW, ["bob", ...args]),
    new Error(`${ca} holds another CA's certificate; choose another --dir`),
  );
  assert.throws(() => Deno.statSync(join(dir, "bob.key")), Deno.errors.NotFound);
});

Deno.test("ztm cert list, revoke and status word what the CA answers", async () => {
  await using local = await startLocalCa();
  const ca = ["--ca-url", local.ca.url];
  for (const endpoint of ["laptop", "phone"]) {
    const res = await fetch(`${local.ca.url}/api/certificates/alice/endpoints/${endpoint}`, {
      method: "POST",
    });
    assert.equal(res.status, 201);
    await res.body?.cancel();
  }
  const listed = () => runCommand(CERT_LIST, ca).then(rows);
  const before = await listed();
  assert.deepEqual(before[0], ["NAME", "ROLE", "ENDPOINT", "SERIAL", "EXPIRES", "STATE"]);
  assert.deepEqual(
    before.slice(1).map((r) => [r[0], r[2], r[5]]).sort(),
    [["alice", "laptop", "valid"], ["alice", "phone", "valid"]],
  );
  const phone = before.find((r) => r[2] === "phone")![3];

  assert.equal(
    await runCommand(CERT_REVOKE, ["alice", "--endpoint=laptop", ...ca]),
    `Revoked the certificate of alice for endpoint laptop (serial ${
      before.find((r) => r[2] === "laptop")![3]
    })`,
  );
  await assert.rejects(
    runCommand(CERT_REVOKE, ["alice", "--serial=00ff", ...ca]),
    new Error("alice has no certificate with serial 00ff"),
  );
  // A serial as typed: upper case and leading zeros are the same serial.
  assert.equal(
    await runCommand(CERT_REVOKE, ["alice", `--serial=00${phone.toUpperCase()}`, ...ca]),
    `Revoked the certificate of alice for endpoint phone (serial ${phone})`,
  );
  assert.deepEqual(
    (await listed()).slice(1).map((r) => [r[2], r[5]]).sort(),
    [["laptop", "revoked"], ["phone", "revoked"]],
  );
  assert.equal(await runCommand(CERT_LIST, ["--json", ...ca]).then((t) => JSON.parse(t).length), 2);

  const status = (await runCommand(CERT_STATUS, ca)).split("\n");
  assert.match(status[0], /^CA /);
  assert.match(status[1], /^ {2}fingerprint {2}\S+$/);
  assert.match(status[2], /^ {2}valid until {2}\S+ \(in \d+ days\)$/);
  assert.equal(status.length, 3, "no expiry warning for a new CA");
});
