/**
 * A certificate per device: the CA issues alice one certificate per endpoint
 * (curl, as the walkthrough does), lists them with their endpoint, and
 * revokes one device (`ztm cert revoke alice --endpoint=laptop`) or one
 * serial without touching the others; a real hub then cuts only that
 * device's session.
 */
import assert from "node:assert/strict";
import { api, bash, eventually, Harness, type UserFiles } from "../fixtures/harness.ts";
import { openssl, serialOfCertificate } from "../fixtures/ca_helpers.ts";
import { ztm, ztmOk } from "../fixtures/cli_helpers.ts";
import { rememberPrivateKey } from "../fixtures/secret_scan.ts";

Deno.test("the CA issues alice a certificate per endpoint and revokes one device only", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir();
  const base = `http://localhost:${ca.port}/api`;
  await bash(
    dir,
    `
umask 077
curl -fsS ${base}/certificates/ca -o ca.crt
curl -fsS ${base}/certificates/alice/endpoints/laptop -X POST -o laptop.key
curl -fsS ${base}/certificates/alice/endpoints/laptop -o laptop.crt
curl -fsS ${base}/certificates/alice/endpoints/desktop -X POST -o desktop.key
curl -fsS ${base}/certificates/alice/endpoints/desktop -o desktop.crt
curl -fsS ${base}/certificates/alice -X POST -o alice.key
curl -fsS ${base}/certificates/alice -o alice.crt
`,
  );
  for (const f of ["laptop", "desktop", "alice"]) {
    rememberPrivateKey(await Deno.readTextFile(`${dir}/${f}.key`));
    const v = await openssl(["verify", "-CAfile", "ca.crt", `${f}.crt`], { cwd: dir });
    assert.equal(v.stdout.trim(), `${f}.crt: OK`);
    const subject = await openssl(
      ["x509", "-in", `${f}.crt`, "-noout", "-subject", "-nameopt", "RFC2253"],
      { cwd: dir },
    );
    assert.equal(subject.stdout.trim(), "subject=CN=alice", "access rules stay per user");
  }
  // A second certificate for the same device is refused; another device is not.
  const again = await bash(
    dir,
    `curl -s -o /dev/null -w '%{http_code}' ${base}/certificates/alice/endpoints/LAPTOP -X POST`,
  );
  assert.equal(again, "409");

  const laptop = await serialOfCertificate(await Deno.readTextFile(`${dir}/laptop.crt`));
  const desktop = await serialOfCertificate(await Deno.readTextFile(`${dir}/desktop.crt`));
  const legacy = await serialOfCertificate(await Deno.readTextFile(`${dir}/alice.crt`));
  // openssl prints serials in upper case with their leading zeros; the CA lower case without.
  const norm = (serial: string) => serial.toLowerCase().replace(/^0+(?=.)/, "");
  const caFlag = `--ca-url=${ca.url}`;
  const list = await ztmOk(["cert", "list", caFlag]);
  assert.match(list, /ENDPOINT/);
  assert.match(list, new RegExp(`alice\\s+user\\s+laptop\\s+${norm(laptop)}`));
  assert.match(list, new RegExp(`alice\\s+user\\s+desktop\\s+${norm(desktop)}`));

  const revoked = await ztmOk(["cert", "revoke", "alice", "--endpoint=laptop", caFlag]);
  assert.match(revoked, new RegExp(`for endpoint laptop \\(serial ${norm(laptop)}\\)`));
  await bash(dir, `curl -fsS ${base}/crl -o crl.pem`);
  const crl = (await openssl(["crl", "-in", "crl.pem", "-noout", "-text"], { cwd: dir })).stdout;
  assert.match(crl, new RegExp(`Serial Number: ${laptop}\\b`));
  assert.doesNotMatch(crl, new RegExp(`Serial Number: ${desktop}\\b`));
  assert.doesNotMatch(crl, new RegExp(`Serial Number: ${legacy}\\b`));
  const codes = await bash(
    dir,
    `for e in laptop desktop; do curl -s -o /dev/null -w '%{http_code} ' ${base}/certificates/alice/endpoints/$e; done
curl -s -o /dev/null -w '%{http_code}' ${base}/certificates/alice`,
  );
  assert.equal(codes, "404 200 200");

  // By serial: the desktop goes, the legacy certificate stays.
  const bySerial = await ztmOk(["cert", "revoke", "alice", `--serial=${desktop}`, caFlag]);
  assert.match(bySerial, /for endpoint desktop/);
  const wrongUser = await ztm(["cert", "revoke", "bob", `--serial=${legacy}`, caFlag]);
  assert.equal(wrongUser.code, 1);
  assert.match(wrongUser.stderr, /bob has no certificate with serial/);
  const listed = JSON.parse(await ztmOk(["cert", "list", caFlag, "--json"])) as {
    endpoint: string | null;
    revoked: boolean;
  }[];
  assert.deepEqual(
    listed.map((c) => [c.endpoint, c.revoked]),
    [["laptop", true], ["desktop", true], [null, false]],
  );
  // The walkthrough's DELETE of the user still revokes what is left.
  assert.equal(
    await bash(dir, `curl -s -o /dev/null -w '%{http_code}' ${base}/certificates/alice -X DELETE`),
    "200",
  );
});

Deno.test("a hub cuts the revoked device's session and keeps the user's other device", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const hub = await h.startHub(ca);
  const caPem = await (await fetch(`${ca.url}/api/certificates/ca`)).text();
  const device = async (endpoint: string): Promise<UserFiles> => {
    const route = `${ca.url}/api/certificates/alice/endpoints/${endpoint}`;
    const privateKey = await (await fetch(route, { method: "POST" })).text();
    rememberPrivateKey(privateKey);
    const certificate = await (await fetch(route)).text();
    return { user: "alice", ca: caPem, certificate, privateKey };
  };
  const agents = [];
  for (const endpoint of ["laptop", "desktop"]) {
    const files = await device(endpoint);
    const agent = await h.startAgent({ name: endpoint });
    const res = await api(agent.url, "POST", "/api/meshes/work?wait=20", {
      ca: files.ca,
      agent: { name: endpoint, certificate: files.certificate, privateKey: files.privateKey },
      bootstraps: [hub.address],
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    agents.push(agent);
  }
  const [laptop, desktop] = agents;
  await ztmOk(["cert", "revoke", "alice", "--endpoint=laptop", `--ca-url=${ca.url}`]);
  await eventually(
    async () => {
      const mesh = (await api(laptop.url, "GET", "/api/meshes/work")).body;
      return mesh.status?.connected === false;
    },
    20_000,
    "the laptop's session cut",
  );
  await hub.waitForLog((l) => l.msg === "session closed: certificate revoked");
  const mesh = (await api(desktop.url, "GET", "/api/meshes/work")).body;
  assert.equal(mesh.status?.connected, true, "the desktop stays connected");
  const endpoints = (await api(desktop.url, "GET", "/api/meshes/work/endpoints")).body;
  const rows = (endpoints.items ?? endpoints) as { name: string; online: boolean }[];
  assert.deepEqual(
    rows.map((e) => [e.name, e.online]).sort(),
    [["desktop", true], ["laptop", false]],
  );
});
