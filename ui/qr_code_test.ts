/**
 * The invite's QR code as SVG: the drawn squares are the code's dark
 * modules inside a four-module light border, and a QR reader (jsQR) decodes
 * the picture back to the text.
 */
import assert from "node:assert/strict";
import jsQRModule from "jsqr";
import { h } from "preact";
import { renderToString } from "preact-render-to-string";
import { terminalQr } from "../cli/invite_commands.ts";
import { QR_QUIET_MODULES, QrCode, qrModules } from "./qr_code.tsx";

/** jsQR's function: a CommonJS module whose types say it is the default export's. */
const jsQR = jsQRModule as unknown as (
  data: Uint8ClampedArray,
  width: number,
  height: number,
) => { data: string } | null;

/** The dark squares an SVG path of `M x y h1v1h-1z` steps draws, on a `size` grid. */
function squares(d: string, size: number): boolean[][] {
  const grid = Array.from({ length: size }, () => new Array<boolean>(size).fill(false));
  for (const [, x, y] of d.matchAll(/M(\d+) (\d+)h1v1h-1z/g)) grid[Number(y)][Number(x)] = true;
  assert.equal(d.replace(/M\d+ \d+h1v1h-1z/g, ""), "", "the path is only unit squares");
  return grid;
}

/** Decodes a grid of modules (4 × 4 pixels each); null when unreadable. */
function decode(grid: boolean[][]): string | null {
  const scale = 4;
  const side = grid.length * scale;
  const pixels = new Uint8ClampedArray(side * side * 4);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const v = grid[Math.floor(y / scale)][Math.floor(x / scale)] ? 0 : 255;
      pixels.set([v, v, v, 255], (y * side + x) * 4);
    }
  }
  return jsQR(pixels, side, side)?.data ?? null;
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
  assert.equal(decode(grid), text);
});

Deno.test("qrModules is the matrix the terminal draws for the same invite", () => {
  const text = "ztm1:" + "y".repeat(205);
  // The terminal draws two rows a line: a blank half is dark (see cli/invite_commands.ts).
  const drawn = terminalQr(text).split("\n").flatMap((line) => [
    [...line].map((ch) => ch === " " || ch === "▄"),
    [...line].map((ch) => ch === " " || ch === "▀"),
  ]);
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
