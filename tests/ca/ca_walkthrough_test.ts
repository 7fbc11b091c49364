/**
 * The original ZTM README's CA walkthrough, run verbatim through bash, curl
 * and openssl against a real CA process; then its revocation step.
 */
import assert from "node:assert/strict";
import { bash, Harness } from "../fixtures/harness.ts";
import { openssl, serialOfCertificate } from "../fixtures/ca_helpers.ts";

Deno.test("original ZTM walkthrough issues root a certificate that openssl verifies against the CA", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();

  await bash(
    dir,
    `
curl http://localhost:${ca.port}/api/certificates/ca | tee ca.crt
curl http://localhost:${ca.port}/api/certificates/root -X POST | tee root.key
curl http://localhost:${ca.port}/api/certificates/root | tee root.crt
`,
  );

  const verify = await openssl(["verify", "-CAfile", "ca.crt", "root.crt"], { cwd: dir });
  assert.equal(verify.stdout.trim(), "root.crt: OK");
  const subject = await openssl(
    ["x509", "-in", "root.crt", "-noout", "-subject", "-nameopt", "RFC2253"],
    { cwd: dir },
  );
  assert.equal(subject.stdout.trim(), "subject=CN=root");
  const keyPublic = await openssl(["pkey", "-in", "root.key", "-pubout"], { cwd: dir });
  const certPublic = await openssl(["x509", "-in", "root.crt", "-noout", "-pubkey"], { cwd: dir });
  assert.match(keyPublic.stdout, /^-----BEGIN PUBLIC KEY-----/);
  assert.equal(keyPublic.stdout, certPublic.stdout);
  assert.match(await Deno.readTextFile(`${dir}/root.key`), /^-----BEGIN PRIVATE KEY-----/);
});

Deno.test("DELETE of root makes GET answer 404 and puts root's serial on the signed CRL", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const base = `http://localhost:${ca.port}/api`;

  await bash(
    dir,
    `
curl ${base}/certificates/ca | tee ca.crt
curl ${base}/certificates/root -X POST | tee root.key
curl ${base}/certificates/root | tee root.crt
curl ${base}/certificates/root -X DELETE
`,
  );
  const after = await bash(dir, `curl -s -o get.json -w '%{http_code}' ${base}/certificates/root`);
  assert.equal(after, "404");
  assert.equal(
    JSON.parse(await Deno.readTextFile(`${dir}/get.json`)).error.code,
    "unknown_certificate",
  );

  await bash(dir, `curl -s -f ${base}/crl -o crl.pem`);
  const serial = await serialOfCertificate(await Deno.readTextFile(`${dir}/root.crt`));
  const crl = await openssl(["crl", "-in", "crl.pem", "-noout", "-text"], { cwd: dir });
  assert.match(crl.stdout, new RegExp(`Serial Number: ${serial}\\b`));
  assert.match(crl.stdout, /Issuer: CN = ztm mesh CA/);
  const verified = await openssl(["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.crt"], {
    cwd: dir,
  });
  assert.match(verified.stdout + verified.stderr, /verify OK/);

  // The name can be issued again; the new certificate is live and not on the CRL.
  await bash(dir, `curl -s -f ${base}/certificates/root -X POST -o root2.key`);
  await bash(dir, `curl -s -f ${base}/certificates/root -o root2.crt`);
  const serial2 = await serialOfCertificate(await Deno.readTextFile(`${dir}/root2.crt`));
  assert.notEqual(serial2, serial);
  await bash(dir, `curl -s -f ${base}/crl -o crl2.pem`);
  const crl2 = await openssl(["crl", "-in", "crl2.pem", "-noout", "-text"], { cwd: dir });
  assert.match(crl2.stdout, new RegExp(`Serial Number: ${serial}\\b`));
  assert.doesNotMatch(crl2.stdout, new RegExp(serial2));
});

Deno.test("openssl rejects a CRL signed by another CA", async () => {
  // The check above means something only if openssl really rejects a CRL from another key.
  await using h = new Harness();
  const ca = await h.startCa();
  const other = await h.startCa();
  const dir = await h.tempDir();
  await bash(
    dir,
    `
curl -s -f http://localhost:${ca.port}/api/certificates/ca -o ca.crt
curl -s -f http://localhost:${other.port}/api/crl -o other.pem
`,
  );
  const out = await openssl(["crl", "-in", "other.pem", "-noout", "-CAfile", "ca.crt"], {
    cwd: dir,
    allowFail: true,
  });
  assert.doesNotMatch(out.stdout + out.stderr, /verify OK/);
});
