/**
 * Test helpers of the end-to-end pair tests (`listener_test.ts`, `identity_test.ts`,
 * `listener_attack_test.ts`, `dialer_test.ts`, `port_map_test.ts`): a splicer that pairs two
 * connections presenting the same ticket, as a hub's data port does (and as an attacker's hub
 * might), a loopback echo target that counts its connections, a pair signer for a user of a
 * test CA, and a small mesh of one caller and providers joined by that splicer
 * (`startPairMesh`).
 */
import { Logger } from "@ztm/shared/log";
import { type PairTicket, peerName, PREAMBLE_BYTES } from "@ztm/shared/peer_protocol";
import { connLeg, splice } from "@ztm/shared/splice";
import { newCa, newLeaf, type TestCa } from "../../tests/fixtures/test_pki.ts";
import { Provider } from "../provider.ts";
import { type DataAddress, PairDialer, type PairDialerOptions } from "./dialer.ts";
import { Signer } from "./identity.ts";
import { PairListener, type PairListenerOptions } from "./listener.ts";

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

const quiet = new Logger("agent", { sink: () => {} });

/** An endpoint of bob's that `signer` speaks for, providing `echo` to alice only; started. */
export function echoProvider(signer: Signer, listenerOpts: Partial<PairListenerOptions> = {}) {
  const echo = echoServer();
  const provider = new Provider({ owner: "bob", log: quiet, mesh: "m" });
  provider.setServices([
    {
      proto: "tcp",
      name: "echo",
      host: "127.0.0.1",
      port: echo.port,
      users: ["alice"],
      strict: false,
    },
  ]);
  const pairs = new PairListener({
    signer,
    log: quiet,
    mesh: "m",
    revoked: () => new Set(),
    serve: (open, caller) => provider.serve(open, caller),
    ...listenerOpts,
  });
  pairs.start();
  return { echo, provider, pairs };
}

/** One provider endpoint of a `PairMesh`: its signer, and what `echoProvider` started. */
export interface PairProvider extends ReturnType<typeof echoProvider> {
  signer: Signer;
}

/** Alice's `PairDialer` and providers of bob's `tcp/echo`, joined by a splicer standing in for the hub. */
export interface PairMesh extends Disposable {
  ca: TestCa;
  alice: Signer;
  dialer: PairDialer;
  /** The splicer's address (the hub's data port). */
  data: DataAddress;
  /** Bob's endpoints by id. */
  providers: Map<string, PairProvider>;
  /** Tickets handed out so far (each is a fresh pair). */
  readonly tickets: number;
  /** The hub's part for a fresh pair to `endpoint`: attaches its listener, hands out the ticket. */
  ticket(endpoint: string): () => Promise<PairTicket>;
}

/**
 * Starts bob's endpoints `endpoints` (default `bob-ep`), each offering `tcp/echo` to alice on
 * its own echo target (`echoProvider`), and alice's dialer (options in `dialer`), on loopback.
 */
export async function startPairMesh(opts: {
  endpoints?: string[];
  dialer?: Partial<Pick<PairDialerOptions, "idleMs" | "maxIdlePerPeer" | "maxPerPeer">>;
} = {}): Promise<PairMesh> {
  const ca = await newCa();
  const alice = await signerOf(ca, "alice");
  const splicer = startSplicer();
  const providers = new Map<string, PairProvider>();
  for (const endpoint of opts.endpoints ?? ["bob-ep"]) {
    const signer = await signerOf(ca, "bob", { endpoint });
    providers.set(endpoint, { signer, ...echoProvider(signer) });
  }
  const dialer = new PairDialer({
    signer: alice,
    log: quiet,
    mesh: "m",
    revoked: () => new Set(),
    ...opts.dialer,
  });
  const data = splicer.data;
  dialer.setDataAddress(data);
  let tickets = 0;
  return {
    ca,
    alice,
    dialer,
    data,
    providers,
    get tickets() {
      return tickets;
    },
    ticket: (endpoint) => () => {
      const p = providers.get(endpoint);
      if (!p) return Promise.reject(new Error(`no endpoint ${endpoint}`));
      const sid = crypto.randomUUID().replaceAll("-", "");
      tickets++;
      p.pairs.attach(data, sid + sid, sid);
      return Promise.resolve({ sid, ticket: sid + sid });
    },
    [Symbol.dispose]() {
      dialer.close();
      for (const p of providers.values()) {
        p.pairs.close();
        p.provider.close();
        p.echo.close();
      }
      splicer.close();
    },
  };
}
