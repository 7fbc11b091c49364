/**
 * Answers on a hub link's HTTP/2 streams: reading a response (bounded in
 * size and time) and turning a hub's error answer into a `ZtmError` with the
 * hub's status and code. The link (`hub_link.ts`) and its CRL (`link_crl.ts`)
 * read their requests' answers through here.
 */
import http2, { type ClientHttp2Stream } from "node:http2";
import { agentError } from "@ztm/shared/agent_api";
import { ZtmError } from "@ztm/shared/errors";
import { readStreamText, StreamTooLarge } from "@ztm/shared/stream_text";
import { errText } from "@ztm/shared/log";

/** Largest JSON response the agent reads from the hub. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;

/** Reads a stream's body up to `limit` bytes; throws `bad_hub_response` past it, `hub_unreachable` on a broken stream. */
export async function readBody(stream: ClientHttp2Stream, limit: number): Promise<string> {
  try {
    return await readStreamText(stream, limit);
  } catch (err) {
    if (err instanceof StreamTooLarge) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      throw agentError("bad_hub_response", "The hub's answer is too large");
    }
    throw agentError("hub_unreachable", errText(err));
  }
}

/** The status and body of a request's answer; throws `hub_timeout` or `stream_closed` without one. */
export function readResponse(stream: ClientHttp2Stream): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(agentError("hub_timeout", "The hub did not answer in time"));
    }, REQUEST_TIMEOUT_MS);
    stream.on("error", () => {});
    let answered = false;
    stream.once("close", () => {
      if (answered) return;
      clearTimeout(timer);
      reject(agentError("stream_closed", "The hub closed the stream before answering"));
    });
    stream.once("response", (headers) => {
      answered = true;
      readBody(stream, MAX_RESPONSE_BYTES).then((body) => {
        clearTimeout(timer);
        resolve({ status: Number(headers[":status"]), body });
      }, reject);
    });
  });
}

/** The message of an error body, or the start of a body that is not one. */
export function errorMessage(body: string): string {
  try {
    return JSON.parse(body).error.message ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

/** Turns a hub error response into a `ZtmError` with the hub's status and code. */
export function errorOfHubAnswer(status: number, value: unknown): ZtmError {
  const e = (value as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  return new ZtmError(
    status,
    typeof e?.code === "string" ? e.code : "hub_error",
    typeof e?.message === "string" ? e.message : `The hub answered ${status}`,
  );
}
