/**
 * Live data without reloads: a hook that fetches one API path now and again
 * every `intervalMs`, one request at a time (a tick is skipped while the last
 * request is still out, and while the tab is hidden). Each path is one page of
 * a list, so polling never fetches a whole mesh. A refusal (401, 403) stops
 * the polling of that path: asking again would only repeat it.
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { callApi } from "./api_client.ts";

/** Poll interval of the live screens. */
export const POLL_MS = 2_000;

/** The latest answer for a polled path. */
export interface Polled<T> {
  data: T | undefined;
  /** The last refusal or network failure, cleared by the next success. */
  error: string | undefined;
  /** The status of the last failure (0: no answer), undefined after a success. */
  status: number | undefined;
  /** True until the first answer for the current path. */
  loading: boolean;
  /** Fetches again now (after a change). */
  reload: () => void;
}

/**
 * Polls `GET path` (nothing when `path` is null). With `keepStale`, the last
 * path's data stays shown until the new path answers (search, paging).
 */
export function usePoll<T>(
  path: string | null,
  intervalMs = POLL_MS,
  keepStale = false,
): Polled<T> {
  const [state, setState] = useState<
    { path: string | null; data?: T; error?: string; status?: number }
  >({ path: null });
  const inFlight = useRef(false);
  const tick = useRef<() => void>(() => {});

  useEffect(() => {
    if (path === null) return;
    const controller = new AbortController();
    let stopped = false;
    const fetchOnce = async () => {
      if (inFlight.current || stopped) return;
      inFlight.current = true;
      try {
        const res = await callApi<T>("GET", path, undefined, controller.signal);
        if (stopped) return;
        setState((s) =>
          res.ok ? { path, data: res.data } : {
            path,
            data: s.path === path ? s.data : undefined,
            error: res.message,
            status: res.status,
          }
        );
        if (!res.ok && (res.status === 401 || res.status === 403)) clearInterval(timer);
      } catch {
        // aborted: the screen changed
      } finally {
        inFlight.current = false;
      }
    };
    tick.current = () => void fetchOnce();
    void fetchOnce();
    const timer = setInterval(() => {
      if (!document.hidden) void fetchOnce();
    }, intervalMs);
    return () => {
      stopped = true;
      inFlight.current = false;
      controller.abort();
      clearInterval(timer);
    };
  }, [path, intervalMs]);

  const reload = useCallback(() => tick.current(), []);
  const current = state.path === path;
  return {
    data: current || keepStale ? state.data : undefined,
    error: current ? state.error : undefined,
    status: current ? state.status : undefined,
    loading: path !== null && (!current || (state.data === undefined && !state.error)),
    reload,
  };
}
