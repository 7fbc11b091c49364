import { strictEqual } from "node:assert/strict";
import { bytesText } from "./bytes_text.ts";

Deno.test("bytesText gives exact bytes under 1 KiB and one decimal of the largest unit above", () => {
  strictEqual(bytesText(0), "0 B");
  strictEqual(bytesText(1023), "1023 B");
  strictEqual(bytesText(5000), "4.9 KiB");
  strictEqual(bytesText(3 * 1024 ** 3), "3.0 GiB");
  strictEqual(bytesText(2048 * 1024 ** 4), "2048.0 TiB");
});
