import assert from "node:assert/strict";
import { pathSegment } from "./path_segment.ts";

Deno.test("a path segment survives URL parsing as one segment", () => {
  for (const value of ["a b", "a/b", "...", ".a", "ä", "%2E", "?x#y", "a\\b"]) {
    const url = new URL(`http://127.0.0.1/api/endpoints/${pathSegment(value)}/log`);
    const parts = url.pathname.split("/");
    assert.equal(parts.length, 5, `${value}: ${url.pathname}`);
    assert.equal(decodeURIComponent(parts[3]), value);
  }
});

Deno.test("the dot segments URL parsing would resolve are refused", () => {
  for (const value of [".", ".."]) {
    assert.throws(() => pathSegment(value), RangeError);
  }
});
