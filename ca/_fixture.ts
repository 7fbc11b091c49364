/**
 * Test helpers of the CA's unit tests (`issue_test.ts`, `revoke_test.ts`, `devices_test.ts`,
 * `invites_test.ts`, `server_test.ts`): a CA's parts (store, signing key, issuer, revoker,
 * and invites) on a fresh database in a temp dir.
 */
import { join } from "node:path";
import { fingerprintOf } from "@ztm/shared/certs";
import { Logger } from "@ztm/shared/log";
import { InviteService } from "./invites.ts";
import { Issuer } from "./issue.ts";
import { Revoker } from "./revoke.ts";
import { loadOrCreateSigningKey, type SigningKey } from "./signing_key.ts";
import { CaStore } from "./store.ts";

/** A CA's parts on a fresh database; `lines` keeps what they logged. Removed on dispose. */
export async function openCa(): Promise<
  AsyncDisposable & {
    store: CaStore;
    signingKey: SigningKey;
    issuer: Issuer;
    revoker: Revoker;
    lines: string[];
  }
> {
  const dir = await Deno.makeTempDir({ prefix: "ztm-ca-test-" });
  const lines: string[] = [];
  const log = new Logger("ca", { sink: (l) => lines.push(l) });
  const store = CaStore.open(join(dir, "ca.db"));
  const signingKey = await loadOrCreateSigningKey(store, log);
  const issuer = new Issuer({ store, signingKey, log });
  const revoker = new Revoker({ store, signingKey, log });
  return {
    store,
    signingKey,
    issuer,
    revoker,
    lines,
    async [Symbol.asyncDispose]() {
      revoker.close();
      store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** `openCa`'s parts and an `InviteService` over them (its options on top); removed on dispose. */
export async function openCaWithInvites(
  options: { failuresPerSecond?: number } = {},
): Promise<Awaited<ReturnType<typeof openCa>> & { invites: InviteService }> {
  const ca = await openCa();
  const invites = new InviteService({
    store: ca.store,
    issuer: ca.issuer,
    caCertificatePem: ca.signingKey.certificatePem,
    caFingerprint: await fingerprintOf(ca.signingKey.certificate),
    log: new Logger("ca", { sink: (l) => ca.lines.push(l) }),
    ...options,
  });
  return Object.assign(ca, { invites });
}
