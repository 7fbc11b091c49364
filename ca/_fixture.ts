/**
 * Test helpers of the CA's unit tests (`issue_test.ts`, `revoke_test.ts`, `devices_test.ts`):
 * a CA's parts (store, signing key, issuer, revoker) on a fresh database in a temp dir.
 */
import { join } from "node:path";
import { Logger } from "@ztm/shared/log";
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
