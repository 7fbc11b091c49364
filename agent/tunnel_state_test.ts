/**
 * The live state of mappings in process: how the hub's list of who offers a
 * service and the last tunnel outcome decide a mapping's health, and how a
 * tracked leg counts open connections and bytes each way.
 */
import assert from "node:assert/strict";
import { ServiceUnavailable } from "@ztm/shared/errors";
import type { MeshService } from "@ztm/shared/protocol";
import type { Leg } from "@ztm/shared/splice";
import { mappingState, Tally, TunnelStates } from "./tunnel_state.ts";
import type { PortMapping } from "./runtime.ts";

const MAPPING: PortMapping = {
  ip: "127.0.0.1",
  proto: "tcp",
  port: 2222,
  target: { service: "ssh" },
};

function offer(user: string, providers: [string, boolean, string[]][]): MeshService {
  return {
    proto: "tcp",
    name: "ssh",
    user,
    providers: providers.map(([name, online, users]) => ({
      endpoint: `${name}-id`,
      name,
      online,
      users,
    })),
  };
}

Deno.test("a mapping's health comes from who offers its service, then from its last tunnel", () => {
  const t = new Tally();
  const health = (offers: MeshService[] | undefined, m = MAPPING) =>
    mappingState(m, "alice", offers, t).health;
  assert.equal(health([]), "unknown_service");
  assert.equal(health([offer("bob", [["office", false, ["alice"]]])]), "no_provider_online");
  assert.equal(health([offer("bob", [["office", true, []]])]), "not_allowed");
  assert.equal(health([offer("bob", [["office", true, ["*"]]])]), "ok");
  assert.equal(health([offer("alice", [["laptop", true, []]])]), "ok", "her own service");
  assert.equal(
    health([offer("bob", [["office", true, ["*"]]])], {
      ...MAPPING,
      target: { service: "ssh", endpoint: "home" },
    }),
    "unknown_service",
    "a pinned endpoint that does not offer it",
  );
  assert.equal(
    health([offer("bob", [["a", true, ["*"]]]), offer("carol", [["b", true, ["*"]]])]),
    "failing",
    "several users offer it and none is named",
  );
  assert.equal(health(undefined), "failing", "the hub cannot be asked");

  // The provider could not reach its target at the last connection.
  t.refused("target_unreachable", "Service tcp/ssh target 10.0.0.5:22 is unreachable");
  const s = mappingState(MAPPING, "alice", [offer("bob", [["office", true, ["*"]]])], t);
  assert.equal(s.health, "target_refusing");
  assert.equal(s.message, "Service tcp/ssh target 10.0.0.5:22 is unreachable");
  assert.equal(s.lastError?.code, "target_unreachable");
  t.failed(new ServiceUnavailable("no_provider_online", "No provider of tcp/ssh is online"));
  assert.equal(t.state("x").health, "no_provider_online");
});

Deno.test("a tracked leg counts itself open until closed or aborted, and its bytes each way", async () => {
  const t = new Tally();
  const chunks = [new Uint8Array(10), new Uint8Array(5)];
  const written: number[] = [];
  let closes = 0;
  const base: Leg = {
    read: () => Promise.resolve(chunks.shift() ?? null),
    write: (c) => {
      written.push(c.byteLength);
      return Promise.resolve();
    },
    closeWrite: () => Promise.resolve(),
    abort: () => closes++,
    close: () => closes++,
  };
  const leg = t.track(base, "up");
  assert.equal(t.open, 1);
  while (await leg.read());
  await leg.write(new Uint8Array(7));
  leg.close();
  leg.abort(); // idempotent for the count
  assert.deepEqual([t.open, t.connections, t.bytesUp, t.bytesDown], [0, 1, 15, 7]);
  assert.equal(closes, 2, "both reach the real leg");
  assert.equal(t.state("Port 2222 → tcp/ssh").message, "Port 2222 → tcp/ssh works");

  // A closed mapping starts from zero on the same port.
  const states = new TunnelStates();
  states.port(MAPPING).connections = 3;
  states.dropPort(MAPPING);
  assert.equal(states.port(MAPPING).connections, 0);
  states.service({ proto: "tcp", name: "gone" }).connections = 1;
  states.keepServices([]);
  assert.equal(states.service({ proto: "tcp", name: "gone" }).connections, 0);
});
