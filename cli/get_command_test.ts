/**
 * `ztm get meshes|endpoints|services|ports` and `ztm log`: the tables made of
 * a real agent's answers (a CA, hub and agent joined as root, in this
 * process), `--json`, paging notes, and the refusal of an unknown KIND.
 */
import assert from "node:assert/strict";
import type { MeshSummary } from "@ztm/shared/agent_api";
import { UsageError } from "@ztm/shared/flags";
import { GET, linkState, LOG } from "./get_command.ts";
import { runCommand, startLocalMesh } from "./_fixture.ts";
import { freePort } from "../tests/fixtures/net_helpers.ts";

/** The rows of a printed table, each split into its cells (two or more spaces apart). */
function rows(text: string): string[][] {
  return text.split("\n").map((line) => line.split(/ {2,}/));
}

Deno.test("linkState words a mesh's hub link", () => {
  const mesh = (status?: { connected: boolean }) => ({ status }) as unknown as MeshSummary;
  assert.equal(linkState(mesh()), "not running");
  assert.equal(linkState(mesh({ connected: true })), "connected");
  assert.equal(linkState(mesh({ connected: false })), "disconnected");
});

Deno.test("ztm get refuses an unknown KIND before it calls the agent", async () => {
  await assert.rejects(
    runCommand(GET, ["peers", "--agent=127.0.0.1:1", "--api-token-file=/nonexistent"]),
    (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.message, 'Unknown KIND "peers": use meshes, endpoints, services, ports');
      return true;
    },
  );
});

Deno.test("ztm get and ztm log show a real agent's meshes, endpoints, services, ports and audit log", async (t) => {
  await using m = await startLocalMesh("work");
  const flags = m.agentFlags;
  const me = m.mesh.endpoint;
  const target = await freePort();
  const listen = await freePort();
  await m.client.createService("work", me.id, {
    proto: "tcp",
    name: "web",
    host: "127.0.0.1",
    port: target,
    users: ["alice", "bob"],
  });
  await m.client.openPort(
    "work",
    me.id,
    { ip: "127.0.0.1", proto: "tcp", port: listen },
    { service: "web" },
  );

  await t.step(
    "meshes: one row per joined mesh; --mesh shows one; --json is the API's answer",
    async () => {
      const table = rows(await runCommand(GET, ["meshes", ...flags]));
      assert.deepEqual(table[0], [
        "MESH",
        "USER",
        "ENDPOINT",
        "HUB",
        "LINK",
        "CERTIFICATE EXPIRES",
      ]);
      assert.equal(table.length, 2);
      assert.deepEqual(table[1].slice(0, 3), ["work", "root", "this-one"]);
      assert.equal(table[1][3], `127.0.0.1:${m.hub.addr.port}`);
      assert.equal(table[1][4], "connected");
      assert.equal(table[1][5], m.mesh.certificate.notAfter);
      assert.deepEqual(
        rows(await runCommand(GET, ["meshes", "--mesh=work", ...flags])),
        table,
      );
      const json = JSON.parse(await runCommand(GET, ["meshes", "--json", ...flags]));
      assert.deepEqual(json.map((s: MeshSummary) => s.name), ["work"]);
    },
  );

  await t.step(
    "endpoints: this one marked, its state and services; a search that finds none says so",
    async () => {
      const table = rows(await runCommand(GET, ["endpoints", ...flags]));
      assert.deepEqual(table[0], ["NAME", "ID", "USER", "STATE", "ADDRESS", "SERVICES"]);
      assert.equal(table.length, 2);
      assert.deepEqual(table[1].slice(0, 4), ["this-one (this one)", me.id, "root", "online"]);
      assert.equal(table[1][5], "tcp/web");
      assert.deepEqual(
        rows(await runCommand(GET, ["endpoints", `--endpoint=${me.id}`, ...flags])),
        table,
      );
      assert.equal(
        await runCommand(GET, ["endpoints", "--query=nothing-like-it", ...flags]),
        "No endpoints.",
      );
      assert.equal(
        await runCommand(GET, ["endpoints", "--offset=5", ...flags]),
        "No endpoints.\n(nothing from --offset=5; 1 in all)",
      );
    },
  );

  await t.step(
    "services: the mesh's with providers and users, or one endpoint's with target and state",
    async () => {
      const mesh = rows(await runCommand(GET, ["services", ...flags]));
      assert.deepEqual(mesh, [
        ["SERVICE", "USER", "PROVIDERS", "USERS"],
        ["tcp/web", "root", "this-one", "alice,bob"],
      ]);
      const own = rows(await runCommand(GET, ["services", `--endpoint=${me.id}`, ...flags]));
      assert.deepEqual(own[0], [
        "SERVICE",
        "TARGET",
        "USERS",
        "STATE",
        "OPEN",
        "UP",
        "DOWN",
        "LAST ERROR",
      ]);
      assert.deepEqual(own[1].slice(0, 3), ["tcp/web", `127.0.0.1:${target}`, "alice,bob"]);
      assert.equal(own[1].length, 8);
      assert.equal(own[1][4], "0");
    },
  );

  await t.step("ports: this endpoint's mappings with their live state", async () => {
    const table = rows(await runCommand(GET, ["ports", ...flags]));
    assert.deepEqual(table[0], [
      "LISTEN",
      "SERVICE",
      "USER",
      "VIA",
      "STATE",
      "OPEN",
      "UP",
      "DOWN",
      "LAST ERROR",
    ]);
    assert.deepEqual(table[1].slice(0, 4), [
      `127.0.0.1:${listen}`,
      "tcp/web",
      "root",
      "-",
    ]);
    assert.deepEqual(table[1].slice(5, 8), ["0", "0 B", "0 B"]);
    const json = JSON.parse(await runCommand(GET, ["ports", "--json", ...flags]));
    assert.equal(json.length, 1);
    assert.equal(json[0].port, listen);
  });

  await t.step(
    "log: newest first, who changed what and how; --limit pages it with a note",
    async () => {
      const table = rows(await runCommand(LOG, flags));
      assert.deepEqual(table[0], ["TIME", "USER", "VIA", "METHOD", "PATH", "STATUS", "OUTCOME"]);
      assert.deepEqual(table.slice(1).map((r) => r[3]), ["POST", "POST"]);
      assert.equal(table[1][4], `ports/127.0.0.1/tcp/${listen}`);
      assert.equal(table[2][4], "services/tcp/web");
      assert.deepEqual(table.slice(1).map((r) => r[1]), ["root", "root"]);
      const page = await runCommand(LOG, ["--limit=1", ...flags]);
      assert.equal(page.split("\n").at(-1), "(1–1 of 2; see --offset and --limit)");
    },
  );
});
