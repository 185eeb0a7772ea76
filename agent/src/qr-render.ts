/**
 * Render a QR for a terminal. No colours: OpenSSH ≥ 8.5 shows ESC as "\033", so the picture is
 * made of characters only. Light modules are drawn as blocks and dark ones as blanks, which reads
 * as a normal QR on a dark terminal and as an inverted one on a light terminal (phone scanners and
 * our tests decode both). A 73-character login payload at level M is version 5 (37 modules): in
 * UTF-8 half blocks that is 45 columns × 21 lines, leaving room in an 80×24 terminal for the
 * typed payload and the prompt.
 */
import { encodeQr } from './qr-mask.js';

const SPACE = 0x20;
const HASH = 0x23;
/** Indexed by (top light ? 2 : 0) | (bottom light ? 1 : 0): ' ', '▄', '▀', '█'. */
const HALF_BLOCKS = [SPACE, 0x2584, 0x2580, 0x2588];

export type QrStyleName = 'utf8' | 'ascii';

/** Quiet zone (light modules around the symbol), in modules. */
export interface QuietZone {
  side: number;
  top: number;
  bottom: number;
}

/**
 * Lines are what an 80×24 terminal lacks, columns it has to spare. UTF-8: the standard's 4
 * modules at the sides, 2 above and 2 below (and the half line that an odd-sized symbol leaves
 * at the bottom is light too: every version is odd, so 3 below). With 2 at the sides a
 * light-terminal (inverted) rendering let jsQR find a phantom symbol first and return "" for
 * some payloads (docs/BENCHMARKS.md, QR robustness); 4 at the sides costs no line. ASCII is two
 * characters a module, so 1 all round keeps a version 5 code within 80 columns.
 */
export const QUIET_ZONE: Readonly<Record<QrStyleName, Readonly<QuietZone>>> = {
  utf8: { side: 4, top: 2, bottom: 2 },
  ascii: { side: 1, top: 1, bottom: 1 },
};

export interface RenderedQr {
  text: string;
  version: number;
  columns: number;
  lines: number;
}

/** `quiet` as a number is that many modules all round. */
export function renderQr(payload: string, style: QrStyleName = 'utf8', quiet: Readonly<QuietZone> | number = QUIET_ZONE[style], ecc: 'L' | 'M' = 'M'): RenderedQr {
  // One byte-mode segment: the library's default search for the shortest mix of modes costs
  // more than the rest of a BEGIN (bench/, benchmark 1) and never gives our payloads (base64url
  // with a few separators) a smaller version: login QRs are version 5 either way. The mask is
  // the one the library would pick, chosen faster (qr-mask.ts).
  const qr = encodeQr(Buffer.from(payload, 'utf8'), ecc);
  const n = qr.size;
  const q = typeof quiet === 'number' ? { side: quiet, top: quiet, bottom: quiet } : quiet;
  const width = n + 2 * q.side;
  let height = n + q.top + q.bottom;
  // Half blocks: a last half line is light too rather than left blank (a free quiet row).
  if (style === 'utf8') height += height % 2;
  // light(r, c): true for a light module, quiet zone included.
  const light = (r: number, c: number): boolean => {
    const rr = r - q.top;
    const cc = c - q.side;
    if (rr < 0 || cc < 0 || rr >= n || cc >= n) return true;
    return qr.dark[rr * n + cc] === 0;
  };
  // Built as UTF-16 code units a line at a time (string += per module was a third of the cost).
  const line = new Uint16Array(style === 'utf8' ? width : width * 2);
  const toText = (end: number): string => {
    while (end > 0 && line[end - 1] === SPACE) end--; // no trailing blanks
    return String.fromCharCode.apply(null, line.subarray(0, end) as unknown as number[]);
  };
  const rows: string[] = [];
  if (style === 'utf8') {
    for (let r = 0; r < height; r += 2) {
      for (let c = 0; c < width; c++) {
        const top = light(r, c) ? 2 : 0;
        const bottom = light(r + 1, c) ? 1 : 0;
        line[c] = HALF_BLOCKS[top | bottom]!;
      }
      rows.push(toText(width));
    }
  } else {
    // Two characters a module keeps it square. Taller than 24 lines: for clients without UTF-8,
    // and for OpenSSH >= 10.3 info messages, which escape every non-ASCII byte.
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) line[2 * c] = line[2 * c + 1] = light(r, c) ? HASH : SPACE;
      rows.push(toText(width * 2));
    }
  }
  return { text: `${rows.join('\n')}\n`, version: qr.version, columns: style === 'utf8' ? width : width * 2, lines: rows.length };
}
