/**
 * Render a QR for a terminal. No colours: OpenSSH ≥ 8.5 shows ESC as "\033", so the picture is
 * made of characters only. Light modules are drawn as blocks and dark ones as blanks, which reads
 * as a normal QR on a dark terminal and as an inverted one on a light terminal (phone scanners and
 * our tests decode both). A 73-character login payload at level M is version 5 (37 modules); with
 * a 2-module quiet zone that is 41 columns × 21 lines in UTF-8 half blocks, leaving room in an
 * 80×24 terminal for the typed payload and the prompt.
 */
import QRCode from 'qrcode';

export type QrStyleName = 'utf8' | 'ascii';
export const QUIET_ZONE = 2;

export interface RenderedQr {
  text: string;
  version: number;
  columns: number;
  lines: number;
}

export function renderQr(payload: string, style: QrStyleName = 'utf8', quietZone = QUIET_ZONE, ecc: 'L' | 'M' = 'M'): RenderedQr {
  // One byte-mode segment: the library's default search for the shortest mix of modes costs
  // more than the rest of a BEGIN (bench/, benchmark 1) and never gives our payloads (base64url
  // with a few separators) a smaller version: login QRs are version 5 either way.
  const qr = QRCode.create([{ data: Buffer.from(payload, 'utf8'), mode: 'byte' }], { errorCorrectionLevel: ecc });
  const n = qr.modules.size;
  const size = n + 2 * quietZone;
  // light(r, c): true for a light module, quiet zone included.
  const light = (r: number, c: number): boolean => {
    const rr = r - quietZone;
    const cc = c - quietZone;
    if (rr < 0 || cc < 0 || rr >= n || cc >= n) return true;
    return !qr.modules.get(rr, cc);
  };
  const rows: string[] = [];
  if (style === 'utf8') {
    for (let r = 0; r < size; r += 2) {
      let line = '';
      for (let c = 0; c < size; c++) {
        const top = light(r, c);
        const bottom = r + 1 < size ? light(r + 1, c) : false;
        line += top && bottom ? '█' : top ? '▀' : bottom ? '▄' : ' ';
      }
      rows.push(line.replace(/ +$/, ''));
    }
  } else {
    // Two characters a module keeps it square. Taller than 24 lines: for clients without UTF-8,
    // and for OpenSSH >= 10.3 info messages, which escape every non-ASCII byte.
    for (let r = 0; r < size; r++) {
      let line = '';
      for (let c = 0; c < size; c++) line += light(r, c) ? '##' : '  ';
      rows.push(line.replace(/ +$/, ''));
    }
  }
  return { text: `${rows.join('\n')}\n`, version: qr.version, columns: style === 'utf8' ? size : size * 2, lines: rows.length };
}
