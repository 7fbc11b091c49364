/** Aligned tables and the note under a partial page. */
import assert from "node:assert/strict";
import { formatTable, pageNote } from "./table.ts";

Deno.test("formatTable pads every column but the last to its widest cell", () => {
  const text = formatTable(["NAME", "STATE", "NOTE"], [
    ["office", "online", "a b"],
    ["a-much-longer-name", "offline", ""],
  ], "none");
  assert.equal(
    text,
    [
      "NAME                STATE    NOTE",
      "office              online   a b",
      "a-much-longer-name  offline",
    ].join("\n"),
  );
  assert.equal(formatTable(["NAME"], [], "No endpoints."), "No endpoints.");
});

Deno.test("pageNote says which part of a longer list a page shows", () => {
  assert.equal(pageNote({ total: 2, offset: 0, items: [1, 2] }), "");
  assert.equal(
    pageNote({ total: 250, offset: 100, items: new Array(100) }),
    "(101–200 of 250; see --offset and --limit)",
  );
  assert.equal(
    pageNote({ total: 3, offset: 5, items: [] }),
    "(nothing from --offset=5; 3 in all)",
  );
});

Deno.test("formatTable prints control characters in cells as escapes, never raw", () => {
  const text = formatTable(["NAME", "USERS"], [["db\x1b[2J", "\u202ealice\r"]], "none");
  assert.equal(text, ["NAME       USERS", "db\\x1b[2J  \\u202ealice\\x0d"].join("\n"));
});
