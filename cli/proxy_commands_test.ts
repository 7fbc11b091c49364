/**
 * `ztm proxy on|off|status`: what is said about a proxy in each of its
 * states, and the three commands against a real agent joined to a mesh (in
 * this process), whose proxy really listens and then really stops.
 */
import assert from "node:assert/strict";
import type { ProxyStatus } from "@ztm/shared/agent_api";
import { PROXY_OFF, PROXY_ON, PROXY_STATUS, proxyText } from "./proxy_commands.ts";
import { runCommand, startLocalMesh } from "./_fixture.ts";

const OFF: ProxyStatus = {
  enabled: false,
  listen: null,
  listening: false,
  address: null,
  error: null,
  connections: 0,
};

Deno.test("proxyText says off, on but not listening (and why), or where it listens and how to use it", () => {
  assert.equal(proxyText("work", OFF), 'The proxy of mesh "work" is off');
  assert.equal(
    proxyText("work", {
      ...OFF,
      enabled: true,
      listen: "127.0.0.1:1080",
      error: "Address in use",
    }),
    'The proxy of mesh "work" is on at 127.0.0.1:1080 but not listening: Address in use',
  );
  const on: ProxyStatus = {
    ...OFF,
    enabled: true,
    listen: "127.0.0.1:0",
    listening: true,
    address: "127.0.0.1:40001",
    connections: 2,
  };
  assert.equal(
    proxyText("work", on),
    [
      'The proxy of mesh "work" listens on 127.0.0.1:40001 (SOCKS5 and HTTP), 2 connection(s) open',
      "  curl --socks5-hostname 127.0.0.1:40001 http://SERVICE.mesh/",
      "  curl -x http://127.0.0.1:40001 http://SERVICE.mesh/",
      "  ssh -o ProxyCommand='nc -X 5 -x 127.0.0.1:40001 %h %p' USER@SERVICE.mesh",
    ].join("\n"),
  );
  const counted = proxyText("work", {
    ...on,
    state: {
      health: "ok",
      message: "",
      lastError: {
        time: "2026-01-01T00:00:00.000Z",
        code: "unknown_service",
        message: 'No service "db" in mesh',
      },
      lastOk: null,
      open: 2,
      connections: 7,
      bytesUp: 300,
      bytesDown: 4000,
    },
  });
  assert.equal(
    counted.split("\n")[1],
    '  7 connection(s) since it started, 300 bytes up, 4000 down; last refusal: No service "db" in mesh',
  );
});

Deno.test("ztm proxy on, status and off drive a real agent's proxy", async () => {
  await using m = await startLocalMesh("work");
  const flags = m.agentFlags;
  assert.equal(await runCommand(PROXY_STATUS, flags), 'The proxy of mesh "work" is off');

  const on = await runCommand(PROXY_ON, ["--listen=127.0.0.1:0", ...flags]);
  const address = /listens on (127\.0\.0\.1:\d+) /.exec(on)?.[1];
  assert.ok(address, on);
  assert.equal(on.split("\n").length, 5, on);
  // It really listens, and stops listening when turned off.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(address.split(":")[1]) });
  conn.close();

  const status = JSON.parse(await runCommand(PROXY_STATUS, ["--json", ...flags]));
  assert.equal(status.enabled, true);
  assert.equal(status.address, address);
  assert.ok(
    (await runCommand(PROXY_STATUS, flags)).startsWith(
      `The proxy of mesh "work" listens on ${address} (SOCKS5 and HTTP)`,
    ),
  );

  assert.equal(await runCommand(PROXY_OFF, flags), 'The proxy of mesh "work" is off');
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: Number(address.split(":")[1]) }),
    Deno.errors.ConnectionRefused,
  );
});
