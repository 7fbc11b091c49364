/**
 * One URL path segment from any string, by `encodeURIComponent`. `.` and `..`
 * are refused: URL parsing resolves them, percent-encoded or not
 * (`/endpoints/..` and `/endpoints/%2E%2E` are both `/`), so a name that
 * skipped validation would turn a request into one for another route.
 *
 * @example
 * ```ts
 * pathSegment("laptop 2"); // "laptop%202"
 * pathSegment(".."); // throws RangeError
 * ```
 *
 * @module
 */

/** `value` as one path segment; throws `RangeError` for `.` and `..`. */
export function pathSegment(value: string): string {
  if (value === "." || value === "..") {
    throw new RangeError(`"${value}" is not a name: a path cannot carry it`);
  }
  return encodeURIComponent(value);
}
