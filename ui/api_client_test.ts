/**
 * The dashboard's API calls against a real HTTP server on loopback: JSON both
 * ways, a refusal returned (never thrown) with the agent's own words, the
 * signed-out message for a 401, status 0 for an agent that is gone, and the
 * query strings of list screens.
 */
import assert from "node:assert/strict";
import { callApi, query } from "./api_client.ts";

interface Seen {
  method: string;
  path: string;
  type: string | null;
  body: string;
}

/** A server that records each request and answers with `answer(path)`. */
function serve(answer: (path: string) => Response) {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    seen.push({
      method: req.method,
      path: url.pathname + url.search,
      type: req.headers.get("content-type"),
      body: await req.text(),
    });
    return answer(url.pathname);
  });
  return {
    seen,
    url: (path: string) => `http://127.0.0.1:${server.addr.port}${path}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

Deno.test("callApi sends a JSON body and returns the parsed answer, or nothing for an empty one", async () => {
  await using s = serve((path) =>
    path === "/empty" ? new Response(null, { status: 204 }) : json({ name: "work" }, 201)
  );
  const made = await callApi<{ name: string }>("POST", s.url("/api/meshes/work"), { a: [1] });
  assert.deepEqual(made, { ok: true, status: 201, data: { name: "work" } });
  assert.deepEqual(s.seen[0], {
    method: "POST",
    path: "/api/meshes/work",
    type: "application/json",
    body: '{"a":[1]}',
  });
  assert.deepEqual(await callApi("DELETE", s.url("/empty")), {
    ok: true,
    status: 204,
    data: undefined,
  });
  assert.equal(s.seen[1].type, null, "no body, no content type");
});

Deno.test("callApi returns a refusal with the agent's code and message, or the status when it has none", async () => {
  await using s = serve((path) =>
    path === "/refused"
      ? json({ error: { code: "unknown_mesh", message: 'Unknown mesh "x"' } }, 404)
      : path === "/signed-out"
      ? json({ error: { code: "token_required", message: "Send the token" } }, 401)
      : new Response("<html>proxy error</html>", { status: 502 })
  );
  assert.deepEqual(await callApi("GET", s.url("/refused")), {
    ok: false,
    status: 404,
    code: "unknown_mesh",
    message: 'Unknown mesh "x"',
  });
  assert.deepEqual(await callApi("GET", s.url("/signed-out")), {
    ok: false,
    status: 401,
    code: "token_required",
    message: "Your dashboard session has ended (the agent restarted?). Open a new login URL.",
  });
  assert.deepEqual(await callApi("GET", s.url("/other")), {
    ok: false,
    status: 502,
    code: "error",
    message: "The agent answered 502",
  });
});

Deno.test("callApi answers status 0 when nothing listens, and throws only when the caller aborted", async () => {
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  free.close();
  assert.deepEqual(await callApi("GET", `http://127.0.0.1:${free.addr.port}/api/meshes`), {
    ok: false,
    status: 0,
    code: "unreachable",
    message: "The agent does not answer. Is it still running?",
  });
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(
    callApi("GET", `http://127.0.0.1:${free.addr.port}/api/meshes`, undefined, aborted.signal),
  );
});

Deno.test("query keeps the set values in order and leaves out empty ones", () => {
  assert.equal(query({ q: "web 1", offset: 0, limit: 50 }), "?q=web+1&offset=0&limit=50");
  assert.equal(query({ q: "", offset: undefined }), "");
  assert.equal(query({ q: "a&b=c" }), "?q=a%26b%3Dc");
});
