/**
 * Byte counts in words for people (`4.9 KiB`), as the `ztm` command line and
 * the dashboard both print them. Machine output keeps the plain numbers.
 *
 * @module
 */

/**
 * `n` bytes in binary units with one decimal (`4.9 KiB`); under 1 KiB, the
 * exact count (`512 B`).
 *
 * @example
 * ```ts
 * bytesText(5000); // "4.9 KiB"
 * ```
 */
export function bytesText(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}
