/** @jsxImportSource preact */
/**
 * Traffic as a small live graph: each polled list of mappings or services
 * carries running byte totals (`state.bytesUp`, `state.bytesDown`); the rate
 * between two polls is one point, and the last {@link SPARK_POINTS} points of
 * each row are drawn as two SVG lines (up, down). No chart library: an SVG
 * polyline is all a sparkline needs.
 *
 * The history lives in the screen that polls (it starts empty when the screen
 * opens) and never grows past one point per row per poll and the window.
 */
import { useMemo, useRef } from "preact/hooks";
import type { TunnelState } from "./api_types.ts";
import { bytesText } from "@ztm/shared/bytes_text";
import { POLL_MS } from "./poll.ts";

/** Points kept and drawn per row (a minute at the 2 s poll, `POLL_MS`). */
export const SPARK_POINTS = 30;

/** One point: bytes a second each way since the poll before. */
export interface Rate {
  up: number;
  down: number;
}

interface Track {
  at: number;
  up: number;
  down: number;
  rates: Rate[];
}

/**
 * The rate history of every row of a polled list, by `keyOf(row)`: a point
 * is added each time `rows` is a new answer. Rows gone from the list are
 * forgotten; a total that went down (a mapping made again) counts as 0.
 */
export function useRates<T extends { state?: TunnelState }>(
  rows: T[] | undefined,
  keyOf: (row: T) => string,
): Map<string, Rate[]> {
  const tracks = useRef(new Map<string, Track>());
  return useMemo(() => {
    const now = Date.now();
    const seen = new Set<string>();
    for (const row of rows ?? []) {
      const s = row.state;
      if (!s) continue;
      const key = keyOf(row);
      seen.add(key);
      const t = tracks.current.get(key);
      if (!t) {
        tracks.current.set(key, { at: now, up: s.bytesUp, down: s.bytesDown, rates: [] });
        continue;
      }
      const secs = Math.max(0.001, (now - t.at) / 1000);
      t.rates.push({
        up: Math.max(0, s.bytesUp - t.up) / secs,
        down: Math.max(0, s.bytesDown - t.down) / secs,
      });
      if (t.rates.length > SPARK_POINTS) t.rates.splice(0, t.rates.length - SPARK_POINTS);
      Object.assign(t, { at: now, up: s.bytesUp, down: s.bytesDown });
    }
    for (const key of tracks.current.keys()) if (!seen.has(key)) tracks.current.delete(key);
    return new Map([...tracks.current].map(([k, t]) => [k, [...t.rates]]));
    // keyOf is a plain function of the row; only a new answer adds a point.
  }, [rows]);
}

const W = 120;
const H = 24;

/** The last minute of one row's traffic: up and down as two lines, scaled to the peak. */
export function Sparkline(props: { rates: Rate[] | undefined; label: string }) {
  const rates = props.rates ?? [];
  const peak = Math.max(1, ...rates.map((r) => Math.max(r.up, r.down)));
  const line = (pick: (r: Rate) => number) =>
    rates.map((r, i) => {
      // The newest point at the right edge; older ones to its left, one step per poll.
      const x = ((SPARK_POINTS - rates.length + i) * W) / (SPARK_POINTS - 1);
      const y = H - 1 - (pick(r) / peak) * (H - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" ");
  const last = rates.at(-1);
  const words = last
    ? `${props.label}: now ${bytesText(Math.round(last.up))}/s up, ${
      bytesText(Math.round(last.down))
    }/s down; peak ${bytesText(Math.round(peak))}/s in the last ${
      Math.round(rates.length * POLL_MS / 1000)
    } s`
    : `${props.label}: no traffic figures yet`;
  return (
    <svg
      class="spark"
      viewBox={`0 0 ${W} ${H}`}
      width={W}
      height={H}
      role="img"
      aria-label={words}
      data-points={rates.length}
      data-peak={Math.round(peak)}
    >
      <title>{words}</title>
      <line class="spark-base" x1="0" y1={H - 0.5} x2={W} y2={H - 0.5} />
      {rates.length > 0 && <polyline class="spark-up" points={line((r) => r.up)} />}
      {rates.length > 0 && <polyline class="spark-down" points={line((r) => r.down)} />}
    </svg>
  );
}
