/**
 * `loadOrCreateSigningKey` on a real store: made once, then the same CA byte
 * for byte, and a key that signs what the CA certificate verifies.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { certificateRole, generateKeyPair, issueLeafCertificate } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { loadOrCreateSigningKey } from "./signing_key.ts";
import { CaStore } from "./store.ts";

Deno.test("the CA is made on first start and loaded byte for byte afterwards", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ztm-signing-" });
  try {
    const path = join(dir, "ca.db");
    const lines: string[] = [];
    const log = new Logger("ca", { sink: (l) => lines.push(l) });

    const store = CaStore.open(path);
    const first = await loadOrCreateSigningKey(store, log);
    store.close();
    assert.equal(lines.filter((l) => JSON.parse(l).msg === "ca created").length, 1);
    assert.equal(certificateRole(first.certificate), "ca");
    // Each CA carries a short tag from its key, so two CAs are told apart by name.
    assert.match(first.certificate.subject, /^CN=ztm mesh CA [0-9a-f]{6}$/);
    assert.ok(await first.certificate.verify({ signatureOnly: true }));
    assert.equal(first.privateKey.extractable, false);

    const again = CaStore.open(path);
    try {
      const second = await loadOrCreateSigningKey(again, log);
      assert.equal(second.certificatePem, first.certificatePem);
      assert.equal(lines.filter((l) => JSON.parse(l).msg === "ca created").length, 1);

      // The loaded key signs certificates that the stored CA certificate verifies.
      const leaf = await issueLeafCertificate(second, {
        commonName: "root",
        publicKey: (await generateKeyPair()).publicKey,
        role: "client",
      });
      assert.ok(await leaf.verify({ publicKey: first.certificate.publicKey }));
    } finally {
      again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
