/**
 * The dashboard's calls to the agent API: same origin, the session cookie
 * from the login URL with the session's secret beside it (`session.ts`),
 * JSON both ways. A refusal is returned, not thrown, with the API's own
 * message, so every screen can show it where it happened.
 */
import { sessionHeaders } from "./session.ts";

/** One API answer. */
export type ApiResult<T> =
  | { ok: true; status: number; data: T }
  | { ok: false; status: number; code: string; message: string };

/** Calls `method path` with an optional JSON body. Never throws; network failures are status 0. */
export async function callApi<T>(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<ApiResult<T>> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      signal,
      credentials: "same-origin",
      headers: {
        ...sessionHeaders(),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    return {
      ok: false,
      status: 0,
      code: "unreachable",
      message: "The agent does not answer. Is it still running?",
    };
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (res.ok) return { ok: true, status: res.status, data: parsed as T };
  const error = (parsed as { error?: { code?: string; message?: string } })?.error;
  if (res.status === 401) {
    return {
      ok: false,
      status: 401,
      code: error?.code ?? "signed_out",
      message: "Your dashboard session has ended (the agent restarted?). Open a new login URL.",
    };
  }
  return {
    ok: false,
    status: res.status,
    code: error?.code ?? "error",
    message: error?.message ?? `The agent answered ${res.status}`,
  };
}

/** A query string from the set values of `params` (with its `?`), or "". */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
