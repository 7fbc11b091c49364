import { deepStrictEqual } from "node:assert/strict";
import { concatBytes } from "./concat_bytes.ts";

Deno.test("concatBytes joins chunks in order, empty ones included", () => {
  deepStrictEqual(
    concatBytes([new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3])]),
    new Uint8Array([1, 2, 3]),
  );
  deepStrictEqual(concatBytes([]), new Uint8Array(0));
});
