/**
 * The few assertions the tests use (`@std/assert` is on JSR, which these
 * machines cannot reach). Each throws an `Error` with the values it compared.
 */
import { deepStrictEqual } from "node:assert";

/** Throws unless `value` is truthy. */
export function assert(value: unknown, message = "assertion failed"): asserts value {
  if (!value) throw new Error(message);
}

/** Throws unless `actual` deep-equals `expected`. */
export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  try {
    deepStrictEqual(actual, expected);
  } catch {
    throw new Error(
      `${message ? message + ": " : ""}expected ${JSON.stringify(expected)?.slice(0, 500)}, got ${
        JSON.stringify(actual)?.slice(0, 500)
      }`,
    );
  }
}
