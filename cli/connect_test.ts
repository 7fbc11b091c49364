/**
 * What every client command shares: the API token's sources, the plain-words
 * message for the two errors a new user meets first, choosing the mesh and
 * endpoint, and `--json` output, against a real agent in this process.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFound, ZtmError } from "@ztm/shared/errors";
import { type Flags, UsageError } from "@ztm/shared/flags";
import {
  AGENT_FLAGS,
  chooseEndpoint,
  chooseMesh,
  connect,
  ENDPOINT_FLAG,
  explainAgentError,
  findToken,
  MESH_FLAG,
  printJson,
  TOKEN_ENV,
} from "./connect.ts";
import type { Command } from "./command.ts";
import { tempDir } from "../tests/fixtures/temp_dir.ts";
import { flagsOf, startLocalAgent, startLocalMesh } from "./_fixture.ts";

/** A command with the shared flags, to parse command lines as every client command does. */
const CLIENT: Command = {
  spec: { name: "ztm test", summary: "", flags: [MESH_FLAG, ENDPOINT_FLAG, ...AGENT_FLAGS] },
  run: () => Promise.resolve(),
};

function flags(...args: string[]): Flags {
  return flagsOf(CLIENT, args);
}

/** Runs `fn` with `$ZTM_API_TOKEN` set to `value` (or unset), then puts it back. */
async function withTokenEnv<T>(value: string | undefined, fn: () => T | Promise<T>): Promise<T> {
  const before = Deno.env.get(TOKEN_ENV);
  if (value === undefined) Deno.env.delete(TOKEN_ENV);
  else Deno.env.set(TOKEN_ENV, value);
  try {
    return await fn();
  } finally {
    if (before === undefined) Deno.env.delete(TOKEN_ENV);
    else Deno.env.set(TOKEN_ENV, before);
  }
}

Deno.test("findToken reads --api-token-file, trimmed, before $ZTM_API_TOKEN, and names a missing or empty file", async () => {
  await using temp = await tempDir("ztm-token-");
  const dir = temp.path;
  const file = join(dir, "agent.db.token");
  Deno.writeTextFileSync(file, "  file-token\n");
  await withTokenEnv("env-token", () => {
    assert.equal(findToken(flags(`--api-token-file=${file}`)), "file-token");
    assert.equal(findToken(flags()), "env-token");
  });
  const missing = join(dir, "nope.token");
  assert.throws(() => findToken(flags(`--api-token-file=${missing}`)), (err: Error) => {
    assert.ok(err instanceof NotFound);
    assert.equal((err as ZtmError).code, "no_token");
    assert.equal(err.message, `The --api-token-file "${missing}" does not exist`);
    return true;
  });
  const empty = join(dir, "empty.token");
  Deno.writeTextFileSync(empty, "\n");
  assert.throws(
    () => findToken(flags(`--api-token-file=${empty}`)),
    new Error(`API token file "${empty}" is empty`),
  );
});

Deno.test("explainAgentError says in plain words that no agent answers, or which token file to pass", async (t) => {
  await using local = await startLocalAgent();
  const port = new URL(local.agent.url).port;
  const dir = local.dir;
  await t.step(
    "the wrong token: the agent names its token file, the message passes it on",
    async () => {
      const wrong = join(dir, "wrong.token");
      Deno.writeTextFileSync(wrong, "not-the-token");
      const given = flags(`--agent=127.0.0.1:${port}`, `--api-token-file=${wrong}`);
      const err = await connect(given).meshes().catch((e) => e);
      assert.equal(err.status, 401);
      assert.equal(
        explainAgentError(err, given),
        `the agent on 127.0.0.1:${port} refused the API token from ${wrong}: this agent's ` +
          `token is in ${local.agent.tokenFile}; pass --api-token-file=${local.agent.tokenFile} ` +
          "or run as the agent's user",
      );
      await withTokenEnv("not-the-token-either", async () => {
        const fromEnv = flags(`--agent=127.0.0.1:${port}`);
        const err = await connect(fromEnv).meshes().catch((e) => e);
        assert.match(
          explainAgentError(err, fromEnv)!,
          /refused the API token from \$ZTM_API_TOKEN:/,
        );
      });
    },
  );

  await t.step("nobody listening on --agent", async () => {
    const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    free.close();
    const given = flags(
      `--agent=127.0.0.1:${free.addr.port}`,
      `--api-token-file=${local.agent.tokenFile}`,
    );
    const err = await connect(given).meshes().catch((e) => e);
    assert.equal(
      explainAgentError(err, given),
      `no agent answers on 127.0.0.1:${free.addr.port} (start one with \`ztm agent\`, or ` +
        "name another with --agent)",
    );
  });

  await t.step("other errors keep their own message", async () => {
    const given = flags(...local.agentFlags);
    const err = await connect(given).mesh("nowhere").catch((e) => e);
    assert.ok(err instanceof NotFound);
    assert.equal(explainAgentError(err, given), undefined);
    assert.equal(explainAgentError(new Error("disk full"), given), undefined);
  });
});

Deno.test("chooseMesh refuses an agent with no mesh with a pointer to ztm join", async () => {
  await using local = await startLocalAgent();
  const given = flags(...local.agentFlags);
  await assert.rejects(chooseMesh(connect(given), given), (err: Error) => {
    assert.ok(err instanceof NotFound);
    assert.equal((err as ZtmError).code, "no_mesh");
    assert.equal(err.message, "This agent has joined no mesh yet; see ztm join --help");
    return true;
  });
});

Deno.test("chooseMesh takes the only mesh, --mesh, or asks for --mesh; chooseEndpoint defaults to this endpoint", async () => {
  await using m = await startLocalMesh("work");
  const only = flags(...m.agentFlags);
  assert.equal((await chooseMesh(connect(only), only)).name, "work");
  const own = await chooseEndpoint(connect(only), only);
  assert.equal(own.mesh.name, "work");
  assert.equal(own.endpoint, m.mesh.endpoint.id);
  const other = flags(...m.agentFlags, "--endpoint=laptop-2");
  assert.equal((await chooseEndpoint(connect(other), other)).endpoint, "laptop-2");

  await m.joinAnother("home");
  await assert.rejects(chooseMesh(connect(only), only), (err: Error) => {
    assert.ok(err instanceof UsageError);
    assert.match(err.message, /^--mesh is required: this agent has joined /);
    assert.deepEqual(err.message.split("joined ")[1].split(", ").sort(), ["home", "work"]);
    return true;
  });
  const named = flags(...m.agentFlags, "--mesh=home");
  assert.equal((await chooseMesh(connect(named), named)).name, "home");
  const unknown = flags(...m.agentFlags, "--mesh=elsewhere");
  await assert.rejects(chooseMesh(connect(unknown), unknown), NotFound);
});

Deno.test("printJson prints one indented document with bidi and C1 controls escaped", () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (text: string) => lines.push(text);
  try {
    printJson({ name: "a\u202eb\u0085", n: 1 });
  } finally {
    console.log = log;
  }
  assert.equal(lines.length, 1);
  assert.equal(lines[0], '{\n  "name": "a\\u202eb\\u0085",\n  "n": 1\n}');
  assert.deepEqual(JSON.parse(lines[0]), { name: "a\u202eb\u0085", n: 1 });
});
