/**
 * The invite's QR code as SVG: the drawn squares are the code's dark
 * modules inside a four-module light border, and a QR reader (jsQR) decodes
 * the picture back to the text.
 */
import assert from "node:assert/strict";
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { terminalQr } from "../cli/invite_commands.ts";
import { QR_QUIET_MODULES, QrCode, qrModules } from "./qr_code.tsx";
import { readQrModules, terminalQrModules } from "../tests/fixtures/qr_read.ts";

/** The dark squares an SVG path of `M x y h1v1h-1z` steps draws, on a `size` grid. */
function squares(d: string, size: number): boolean[][] {
  const grid = Array.from({ length: size }, () => new Array<boolean>(size).fill(false));
  for (const [, x, y] of d.matchAll(/M(\d+) (\d+)h1v1h-1z/g)) grid[Number(y)][Number(x)] = true;
  assert.equal(d.replace(/M\d+ \d+h1v1h-1z/g, ""), "", "the path is only unit squares");
  return grid;
}

Deno.test("QrCode draws the text's modules, dark on white, in a quiet zone a reader decodes", () => {
  const text = "ztm1:" + "x".repeat(200);
  const modules = qrModules(text);
  const n = modules.length;
  const svg = renderToString(h(QrCode, { text, label: "Invite for alice", id: "qr" }));
  const size = n + 2 * QR_QUIET_MODULES;
  assert.match(
    svg,
    new RegExp(`^<svg id="qr" class="qr" role="img" aria-label="Invite for alice"`),
  );
  assert.ok(svg.includes(`viewBox="0 0 ${size} ${size}"`), svg.slice(0, 200));
  assert.ok(svg.includes(`data-modules="${n}"`));
  assert.ok(svg.includes(`<rect width="${size}" height="${size}" fill="#fff"></rect>`));
  const d = /<path d="([^"]*)" fill="#000">/.exec(svg)![1];
  const grid = squares(d, size);
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const inside = r >= QR_QUIET_MODULES && c >= QR_QUIET_MODULES &&
        r < size - QR_QUIET_MODULES &&
        c < size - QR_QUIET_MODULES;
      const dark = inside && modules[r - QR_QUIET_MODULES][c - QR_QUIET_MODULES];
      assert.equal(grid[r][c], dark, `module ${r},${c}`);
    }
  }
  assert.equal(readQrModules(grid), text);
});

Deno.test("qrModules is the matrix the terminal draws for the same invite", () => {
  const text = "ztm1:" + "y".repeat(205);
  const drawn = terminalQrModules(terminalQr(text));
  const q = QR_QUIET_MODULES;
  const n = qrModules(text).length;
  assert.deepEqual(drawn.slice(q, q + n).map((row) => row.slice(q, q + n)), qrModules(text));
});

Deno.test("qrModules is a square matrix that grows with the text", () => {
  const small = qrModules("a");
  assert.equal(small.length, 21, "version 1");
  assert.ok(small.every((row) => row.length === 21));
  // The finder pattern's corner module is dark in every QR code.
  assert.equal(small[0][0], true);
  assert.ok(qrModules("b".repeat(500)).length > 21);
});
