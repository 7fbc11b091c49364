/**
 * Test helpers of the end-to-end pair tests (`listener_test.ts`, `identity_test.ts`,
 * `listener_attack_test.ts`): a splicer that pairs two connections presenting the same ticket, as a
 * hub's data port does (and as an attacker's hub might), a loopback echo target that counts
 * its connections, and a pair signer for a user of a test CA.
 */
import { peerName, PREAMBLE_BYTES } from "@ztm/shared/peer_protocol";
import { connLeg, splice } from "@ztm/shared/splice";
import { newLeaf, type TestCa } from "../../tests/fixtures/test_pki.ts";
import { Signer } from "./identity.ts";

/** Pairs loopback connections by their preamble's ticket (`ZTM2 <ticket>`) and splices them. */
export function startSplicer(): {
  data: { hostname: string; port: number };
  close(): void;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const waiting = new Map<string, Deno.Conn>();
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(PREAMBLE_BYTES);
        let got = 0;
        while (got < buf.length) {
          const n = await conn.read(buf.subarray(got));
          if (n === null) return conn.close();
          got += n;
        }
        const ticket = new TextDecoder().decode(buf).slice(5, 69);
        const other = waiting.get(ticket);
        if (!other) return void waiting.set(ticket, conn);
        waiting.delete(ticket);
        await splice(connLeg(other), connLeg(conn));
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    data: { hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    close: () => closeAll(listener, conns),
  };
}

/** A loopback echo target; `accepted` counts the connections that reached it. */
export function echoServer(): { port: number; readonly accepted: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const c of listener) {
      accepted++;
      conns.add(c);
      splice(connLeg(c), connLeg(c)).catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return accepted;
    },
    close: () => closeAll(listener, conns),
  };
}

/**
 * The pair signer of `user` of test CA `ca`: a member certificate (the peer role, with its
 * peer name), or with `role` another role and no peer name.
 */
export async function signerOf(
  ca: Pick<TestCa, "certificate" | "privateKey" | "pem">,
  user: string,
  opts: { endpoint?: string; role?: "peer" | "client" | "server" } = {},
): Promise<Signer> {
  const role = opts.role ?? "peer";
  const leaf = await newLeaf(ca, {
    name: user,
    role,
    altNames: role === "peer" ? [peerName(user)] : undefined,
  });
  return new Signer({
    caPem: ca.pem,
    certPem: leaf.certificate,
    keyPem: leaf.privateKey,
    user,
    endpoint: opts.endpoint ?? `${user}-ep`,
  });
}

function closeAll(listener: Deno.Listener, conns: Set<Deno.Conn>): void {
  listener.close();
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}
