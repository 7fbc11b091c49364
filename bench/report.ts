/**
 * Figures of the benchmark across runs, and how they are printed: markdown
 * tables (medians, with min–max when there are several runs) and one JSON
 * line with every figure.
 *
 * A figure is named `measurement.metric[.process]` and has one list of values
 * per path (one value per run). Ratios are ztm over ssh -L, of the medians.
 */

/** The paths compared, in column order. */
export const PATHS = ["direct", "ssh", "ztm"] as const;
/** One path. */
export type PathName = typeof PATHS[number];

/** min, median and max of one figure's values across runs. */
export interface Spread {
  min: number;
  median: number;
  max: number;
}

/** One table row: a figure and its label. */
export interface Row {
  figure: string;
  label: string;
}

/** A failure or remark, kept for the report. */
export interface Remark {
  run?: number;
  path?: PathName;
  measurement?: string;
  message: string;
}

/** Collects figures over runs. Not for concurrent writers (one bench loop). */
export class Results {
  #values = new Map<string, Map<PathName, number[]>>();
  /** Failed measurements and other problems. */
  readonly errors: Remark[] = [];
  /** Things the reader should know (skipped baselines, setup notes). */
  readonly notes: string[] = [];

  /** Adds one run's `value` of `figure` on `path`; non-finite values are ignored. */
  add(figure: string, path: PathName, value: number): void {
    if (!Number.isFinite(value)) return;
    let byPath = this.#values.get(figure);
    if (!byPath) this.#values.set(figure, byPath = new Map());
    const list = byPath.get(path) ?? [];
    list.push(value);
    byPath.set(path, list);
  }

  /** The spread of `figure` on `path`, or undefined without values. */
  spread(figure: string, path: PathName): Spread | undefined {
    const list = this.#values.get(figure)?.get(path);
    if (!list?.length) return undefined;
    const sorted = [...list].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    return { min: sorted[0], median, max: sorted[sorted.length - 1] };
  }

  /** ztm's median over ssh -L's, or undefined. */
  ratio(figure: string): number | undefined {
    const z = this.spread(figure, "ztm");
    const s = this.spread(figure, "ssh");
    return z && s && s.median !== 0 ? z.median / s.median : undefined;
  }

  /** Every figure name, in the order first added. */
  figures(): string[] {
    return [...this.#values.keys()];
  }

  /** The largest value of `figure` over all paths and runs, or undefined. */
  max(figure: string): number | undefined {
    const all = [...(this.#values.get(figure)?.values() ?? [])].flat();
    return all.length ? Math.max(...all) : undefined;
  }
}

/** Rounds for display and JSON: whole numbers from 100, else three significant digits. */
export function round(v: number): number {
  if (Math.abs(v) >= 100) return Math.round(v);
  return Number(v.toPrecision(3));
}

/** `1,234` style. */
function num(v: number): string {
  return round(v).toLocaleString("en-US", { maximumFractionDigits: 2 });
}

/** A table cell: the median, with `(min–max)` when the runs differ. */
export function cell(s: Spread | undefined): string {
  if (!s) return "–";
  if (round(s.min) === round(s.max)) return num(s.median);
  return `${num(s.median)} (${num(s.min)}–${num(s.max)})`;
}

/** Renders rows of text cells as a markdown table with padded columns. */
export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")
    } |`;
  const rule = `| ${
    widths.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")
  } |`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** The figures table: one row per figure, columns direct, ssh -L, ztm, ztm/ssh. */
export function figuresTable(results: Results, rows: Row[]): string {
  return markdownTable(
    ["metric", "direct", "ssh -L", "ztm", "ztm/ssh"],
    rows.map(({ figure, label }) => {
      const r = results.ratio(figure);
      return [
        label,
        ...PATHS.map((p) => cell(results.spread(figure, p))),
        r === undefined ? "–" : r.toFixed(r < 0.1 ? 3 : 2),
      ];
    }),
  );
}

/** Every figure as `{figure: {direct?, ssh?, ztm?, ztmToSsh?}}` with rounded spreads. */
export function figuresJson(results: Results): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const figure of results.figures()) {
    const entry: Record<string, unknown> = {};
    for (const p of PATHS) {
      const s = results.spread(figure, p);
      if (s) entry[p] = { min: round(s.min), median: round(s.median), max: round(s.max) };
    }
    const r = results.ratio(figure);
    if (r !== undefined) entry.ztmToSsh = Number(r.toPrecision(3));
    out[figure] = entry;
  }
  return out;
}
