import assert from "node:assert/strict";
import http2 from "node:http2";
import { ZtmError } from "@ztm/shared/errors";
import { errorMessage, errorOfHubAnswer, readBody, readResponse } from "./hub_response.ts";
import { H2Pair } from "../tests/fixtures/h2_pair.ts";

function get(pair: H2Pair, path: string) {
  return pair.session.request({ ":method": "GET", ":path": path }, { endStream: true });
}

/** Asserts `promise` rejects with a `ZtmError` of `code` and `status`; returns it. */
async function rejectsWith(promise: Promise<unknown>, code: string, status: number) {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected ${code}`), (err) => (caught = err));
  assert.ok(caught instanceof ZtmError, String(caught));
  assert.equal(caught.code, code);
  assert.equal(caught.status, status);
  return caught;
}

Deno.test("a hub's answer is read whole with its status, whatever the status", async () => {
  await using pair = await H2Pair.start();
  pair.onRequest = (stream, headers) => {
    const status = headers[":path"] === "/ok" ? 200 : 409;
    stream.respond({ ":status": status, "content-type": "application/json" });
    stream.write('{"a":');
    stream.end(`"${"x".repeat(100_000)}"}`);
  };
  const ok = await readResponse(get(pair, "/ok"));
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).a.length, 100_000);
  const refused = await readResponse(get(pair, "/no"));
  assert.equal(refused.status, 409);
});

Deno.test("a body past the limit is refused as bad_hub_response and cancelled; one at the limit is read", async () => {
  await using pair = await H2Pair.start();
  let serverSide: Promise<number> | undefined;
  pair.onRequest = (stream, headers) => {
    stream.respond({ ":status": 200 });
    if (headers[":path"] === "/whole") {
      stream.end("y".repeat(1000));
      return;
    }
    // More than the limit, and the stream left open: only the reader's cancel ends it.
    serverSide = new Promise((resolve) => stream.once("close", () => resolve(stream.rstCode)));
    stream.write("y".repeat(2000));
  };
  const at = get(pair, "/whole");
  await new Promise((resolve) => at.once("response", resolve));
  assert.equal((await readBody(at, 1000)).length, 1000);

  const past = get(pair, "/endless");
  await new Promise((resolve) => past.once("response", resolve));
  const err = await rejectsWith(readBody(past, 1000), "bad_hub_response", 503);
  assert.match(err.message, /too large/);
  // The hub sees the stream cancelled: the agent does not wait for (or buffer) the rest.
  assert.equal(await serverSide, http2.constants.NGHTTP2_CANCEL);
});

Deno.test("a stream the hub resets before answering rejects stream_closed", async () => {
  await using pair = await H2Pair.start();
  pair.onRequest = (stream) => stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  await rejectsWith(readResponse(get(pair, "/")), "stream_closed", 503);
  // The session outlives the one stream.
  pair.onRequest = (stream) => {
    stream.respond({ ":status": 204 });
    stream.end();
  };
  assert.deepEqual(await readResponse(get(pair, "/")), { status: 204, body: "" });
});

Deno.test("a session that ends in the middle of an answer rejects hub_unreachable with why", async () => {
  await using pair = await H2Pair.start();
  pair.onRequest = (stream) => {
    stream.respond({ ":status": 200 });
    stream.write("partial");
  };
  const stream = get(pair, "/");
  // As the link's PING does when the hub stops answering.
  stream.once("data", () => pair.session.destroy(new Error("hub did not answer PING")));
  const err = await rejectsWith(readResponse(stream), "hub_unreachable", 503);
  assert.match(err.message, /did not answer PING/);
});

Deno.test("an error body's message is shown; a body that is not one shows its first 200 characters", () => {
  assert.equal(
    errorMessage(JSON.stringify({ error: { code: "x", message: "Unknown mesh" } })),
    "Unknown mesh",
  );
  const long = "<html>" + "z".repeat(500);
  assert.equal(errorMessage(long), long.slice(0, 200));
  assert.equal(errorMessage('{"status":"fine"}'), '{"status":"fine"}');
  assert.equal(errorMessage('{"error":{"code":"x"}}'), '{"error":{"code":"x"}}');
  assert.equal(errorMessage(""), "");
});

Deno.test("a hub's error answer becomes a ZtmError with the hub's status, code and message", () => {
  const err = errorOfHubAnswer(404, { error: { code: "unknown_endpoint", message: "No such" } });
  assert.ok(err instanceof ZtmError);
  assert.equal(err.status, 404);
  assert.equal(err.code, "unknown_endpoint");
  assert.equal(err.message, "No such");

  // Whatever else the hub sends, the status stays and the code and message are ours.
  for (const value of [undefined, null, "text", [], { error: "x" }, { error: { code: 7 } }]) {
    const e = errorOfHubAnswer(502, value);
    assert.equal(e.status, 502);
    assert.equal(e.code, "hub_error");
    assert.equal(e.message, "The hub answered 502");
  }
  const half = errorOfHubAnswer(429, { error: { code: "rate_limited", message: 5 } });
  assert.equal(half.code, "rate_limited");
  assert.equal(half.message, "The hub answered 429");
});
