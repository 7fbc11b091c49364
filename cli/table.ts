/**
 * Aligned text tables for the `ztm` command line: a header row and one row
 * per item, columns padded to their widest cell. Scripts use `--json` instead.
 * Cells hold what other members (and hubs) control — service and user names,
 * audit log entries — so every cell is printed with its control characters
 * escaped (`safeText`): no string reaches the terminal as an escape sequence.
 */
import { safeText } from "@ztm/shared/errors";

/** Renders `rows` under `headers`, columns separated by two spaces; `empty` when there are no rows. */
export function formatTable(headers: string[], cells: string[][], empty: string): string {
  if (cells.length === 0) return empty;
  const rows = cells.map((r) => r.map((c) => safeText(c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** A note under a page of a longer list, or "" when the page shows everything. */
export function pageNote(page: { total: number; offset: number; items: unknown[] }): string {
  if (page.offset === 0 && page.items.length >= page.total) return "";
  if (page.items.length === 0) {
    return `(nothing from --offset=${page.offset}; ${page.total} in all)`;
  }
  return `(${page.offset + 1}–${
    page.offset + page.items.length
  } of ${page.total}; see --offset and --limit)`;
}
