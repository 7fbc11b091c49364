/** @jsxImportSource preact */
/**
 * A QR code as inline SVG, drawn from the same library and settings as the
 * terminal's (`cli/invite_commands.ts`: `qrcode-generator`, byte mode, level
 * L, a four-module quiet zone), dark modules on white so phone cameras read
 * it in a dark theme too. The matrix is computed here; nothing is fetched.
 */
import qrcode from "qrcode-generator";

/** Modules of light border scanners want around the code. */
export const QR_QUIET_MODULES = 4;

/** The QR module matrix of `text` (true = dark), as the terminal's code has it. */
export function qrModules(text: string): boolean[][] {
  const qr = qrcode(0, "L");
  qr.addData(text, "Byte");
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

/** `text` as a QR code; `label` names it for screen readers. */
export function QrCode(props: { text: string; label: string; id?: string }) {
  const modules = qrModules(props.text);
  const size = modules.length + 2 * QR_QUIET_MODULES;
  let path = "";
  modules.forEach((row, r) =>
    row.forEach((dark, c) => {
      if (dark) path += `M${c + QR_QUIET_MODULES} ${r + QR_QUIET_MODULES}h1v1h-1z`;
    })
  );
  return (
    <svg
      id={props.id}
      class="qr"
      role="img"
      aria-label={props.label}
      viewBox={`0 0 ${size} ${size}`}
      shape-rendering="crispEdges"
      data-modules={modules.length}
    >
      <rect width={size} height={size} fill="#fff" />
      <path d={path} fill="#000" />
    </svg>
  );
}
