/**
 * Answers on the hub's HTTP/2 streams, read back by a real client: JSON with
 * its status, the shared error body, a body alone once headers went out, and
 * nothing at all on a stream that is already gone.
 */
import assert from "node:assert/strict";
import type { ServerHttp2Stream } from "node:http2";
import { startH2Server } from "../tests/fixtures/h2_server.ts";
import { hubError } from "./errors.ts";
import { respondError, respondJson } from "./respond.ts";

const ROUTES: Record<string, (stream: ServerHttp2Stream) => void> = {
  "/json": (s) => respondJson(s, 201, { a: 1 }),
  "/late": (s) => {
    s.respond({ ":status": 202, "content-type": "text/plain" });
    respondJson(s, 500, { b: 2 });
  },
  "/error": (s) => respondError(s, hubError("unknown_service", "No service tcp/web")),
  "/crash": (s) => respondError(s, new Error("secret detail at /var/lib/ztm")),
};

Deno.test("respondJson and respondError answer with the status, JSON content type and one JSON line", async () => {
  let afterGone: unknown = "not run";
  await using server = await startH2Server((stream, headers) => {
    const path = String(headers[":path"]);
    if (path !== "/gone") return ROUTES[path](stream);
    stream.close();
    try {
      respondJson(stream, 200, {});
      respondError(stream, new Error("x"));
      afterGone = undefined;
    } catch (err) {
      afterGone = err;
    }
  });
  await using client = await server.client();
  const answers = await Promise.all(
    ["/json", "/late", "/error", "/crash"].map((p) => client.openStream(p, "")),
  );
  const read = (i: number) => {
    const { status, headers, text } = answers[i];
    return { status, type: headers?.["content-type"], text };
  };
  assert.deepEqual(read(0), { status: 201, type: "application/json", text: '{"a":1}\n' });
  assert.deepEqual(read(1), { status: 202, type: "text/plain", text: '{"b":2}\n' });
  assert.deepEqual(read(2), {
    status: 404,
    type: "application/json",
    text: '{"error":{"code":"unknown_service","message":"No service tcp/web"}}\n',
  });
  const crash = read(3);
  assert.equal(crash.status, 500);
  assert.equal(JSON.parse(crash.text).error.code, "internal");
  assert.ok(!crash.text.includes("secret"), "an unexpected error's details stay in the log");
  const gone = await client.request("GET", "/gone");
  assert.equal(gone.status, undefined);
  assert.equal(afterGone, undefined, "a gone stream is left alone, without a throw");
});
