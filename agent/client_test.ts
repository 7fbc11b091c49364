/**
 * The client's own failure modes over real loopback sockets: nobody listening,
 * and a listener that never answers. (Answers and refusals of a real agent are
 * tested in tests/cli/cli_*_test.ts; error bodies in shared/errors_test.ts.)
 */
import assert from "node:assert/strict";
import { GatewayTimeout, ServiceUnavailable } from "@ztm/shared/errors";
import { AgentClient } from "./client.ts";

Deno.test("the client throws ServiceUnavailable when nothing listens at the agent's address", async () => {
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = free.addr.port;
  free.close();
  const client = new AgentClient({ url: `127.0.0.1:${port}`, token: "t" });
  assert.equal(client.url, `http://127.0.0.1:${port}`);
  await assert.rejects(client.meshes(), (err: Error) => {
    assert.ok(err instanceof ServiceUnavailable);
    assert.equal(err.code, "agent_unreachable");
    assert.match(
      err.message,
      new RegExp(`^Cannot reach the agent at http://127\\.0\\.0\\.1:${port}: `),
    );
    return true;
  });
});

Deno.test("the client gives up with GatewayTimeout on an agent that accepts but never answers", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  try {
    const client = new AgentClient({
      url: `http://127.0.0.1:${silent.addr.port}/`,
      token: "t",
      timeoutMs: 300,
    });
    await assert.rejects(client.mesh("work"), (err: Error) => {
      assert.ok(err instanceof GatewayTimeout);
      assert.equal(err.code, "agent_timeout");
      assert.equal(
        err.message,
        `The agent at http://127.0.0.1:${silent.addr.port} did not answer GET /api/meshes/work within 300 ms`,
      );
      return true;
    });
  } finally {
    silent.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
  }
});
