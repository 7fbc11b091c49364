/**
 * A stranger flood on the control port from a few loopback addresses
 * (127.0.0.2 … 127.0.0.5), each holding 400 connections that never start a
 * TLS handshake and opening a new one whenever one closes, against a hub run
 * under `ulimit -n 1024`: a member still joins, publishes and is listed, and
 * the hub writes a handful of log lines, not one per connection.
 *
 * Without a per-address cap the flood takes every descriptor; in Deno 2.9.3
 * the accept error (EMFILE) then closes the listening socket for good.
 */
import assert from "node:assert/strict";
import {
  componentRunArgs,
  eventually,
  Harness,
  issueUser,
  joinMesh,
  startProc,
} from "../fixtures/harness.ts";
import { holdIdleConnections } from "../fixtures/fault_helpers.ts";
import { HubClient, userTls } from "../fixtures/hub_client.ts";
import { endpointSeenBy, MESH, waitConnected } from "../fixtures/mesh_fixture.ts";

const STRANGERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const PER_STRANGER = 400;
const FD_LIMIT = 1024;

Deno.test("a stranger flood from a few addresses against a hub at 1,024 descriptors keeps no member from joining", async () => {
  await using h = new Harness();
  const ca = await h.startCa();
  const dir = await h.tempDir("ztm-hub-");
  const hubArgs = componentRunArgs("hub/main.ts", [
    `--ca=${ca.url.replace(/^http:\/\//, "")}`,
    "--listen=127.0.0.1:0",
    "--data-listen=127.0.0.1:0",
    "--names=localhost",
    `--data-dir=${dir}`,
    `--ca-token-file=${ca.database}.token`,
  ]);
  const quoted = [Deno.execPath(), ...hubArgs].map((a) => `'${a.replaceAll("'", "'\\''")}'`);
  const hub = startProc("hub", "sh", ["-c", `ulimit -n ${FD_LIMIT} && exec ${quoted.join(" ")}`]);
  try {
    const line = await hub.waitForLog((l) => l.msg === "listening");
    const port = Number(String(line.addr).split(":").pop());
    const limits = await Deno.readTextFile(`/proc/${hub.child.pid}/limits`);
    assert.match(limits, new RegExp(`Max open files\\s+${FD_LIMIT}\\s`));
    const logsBefore = hub.logs.length;

    const floods = STRANGERS.map((a) => holdIdleConnections(port, a, PER_STRANGER, 50));
    try {
      // The strangers hold their connections before the member comes.
      await eventually(
        () => floods.every((f) => f.opened >= PER_STRANGER),
        30_000,
        "every stranger connection opened",
      );
      // A busy shared machine may slow the handshakes: a generous deadline, not a fixed wait.
      const join = async (user: string) => {
        const files = await issueUser(ca.url, user);
        const proc = await h.startAgent({ name: `agent-${user}` });
        const joined = await joinMesh(proc.url, MESH, files, `localhost:${port}`, `${user}-ep`);
        const agent = { url: proc.url, files, endpointId: joined.endpoint.id as string };
        try {
          await waitConnected(agent, 60_000);
        } catch (err) {
          throw new Error(`${user} did not join; hub said:\n${hub.tail(20)}`, { cause: err });
        }
        return agent;
      };
      const [alice, bob] = await Promise.all([join("alice"), join("bob")]);
      assert.equal((await endpointSeenBy(alice, bob.endpointId))?.online, true);
      assert.equal(hub.exited, false);
      await using client = HubClient.connect(port, userTls(alice.files));
      const status = JSON.parse((await client.request("GET", "/api/status")).text);
      assert.ok(status.controlConnections.refused > 0, JSON.stringify(status.controlConnections));
      const opened = floods.reduce((n, f) => n + f.opened, 0);
      const written = hub.logs.length - logsBefore;
      console.log(
        `${opened} stranger connections from ${STRANGERS.length} addresses; the hub refused ` +
          `${status.controlConnections.refused} at once and wrote ${written} log lines meanwhile`,
      );
      assert.ok(opened > FD_LIMIT, `the flood opened ${opened} connections`);
      assert.ok(written < 200, `${written} log lines for ${opened} stranger connections`);
    } finally {
      for (const f of floods) f.stop();
    }
  } finally {
    await hub.stop();
  }
});
