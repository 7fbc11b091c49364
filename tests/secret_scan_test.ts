/**
 * The suite-wide log scan catches a private key in a process's output in the
 * spellings a leak takes, and lets certificates and ordinary lines through.
 */
import assert from "node:assert/strict";
import { Harness } from "./harness.ts";
import { newCa, newLeaf } from "./test_pki.ts";
import { x509 } from "@ztm/shared/certs";

/** Runs a process that prints `lines`, disposes the harness, and returns the error it threw. */
async function scan(lines: string[]): Promise<Error | undefined> {
  const h = new Harness();
  const proc = h.spawn("printer", "tests/print_lines.ts", lines);
  await proc.status;
  try {
    await h[Symbol.asyncDispose]();
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

Deno.test("the harness fails a test whose process wrote a private key, in any spelling", async () => {
  const leaf = await newLeaf(await newCa(), { name: "leaky" });
  const der = new Uint8Array(x509.PemConverter.decode(leaf.privateKey)[0]);
  const body = leaf.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
  const jwk = await crypto.subtle.exportKey(
    "jwk",
    await crypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
    ]),
  );
  const spellings: Record<string, string> = {
    "PEM in a JSON log line": JSON.stringify({ msg: "oops", key: leaf.privateKey }),
    "a PEM body line without its markers": body[1],
    "the DER as one base64 string": `key=${btoa(String.fromCharCode(...der))}`,
    "a JWK": JSON.stringify({ d: jwk.d }),
    "only a marker": "-----BEGIN EC PRIVATE KEY-----",
  };
  for (const [what, line] of Object.entries(spellings)) {
    const err = await scan(["ordinary line", line]);
    assert.ok(err, `${what}: not caught`);
    assert.match(err.message, /printer line 2/, what);
    // The report names the line, and never repeats the secret.
    assert.ok(!err.message.includes(body[1].slice(10, 40)), `${what}: the report leaks the key`);
  }
  // The certificate (public) and ordinary log lines pass.
  const clean = await scan([leaf.certificate.replaceAll("\n", "\\n"), '{"msg":"listening"}']);
  assert.equal(clean, undefined, clean?.message);
});
