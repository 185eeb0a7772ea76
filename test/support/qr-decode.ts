/**
 * Decode a QR the way a phone camera sees a terminal: rasterize the characters the terminal
 * shows (UTF-8 half blocks or ASCII "##"), with the terminal's own colours around them, and
 * run a real QR decoder (jsQR) on the pixels.
 */
import jsQRModule from 'jsqr';

// jsqr ships CommonJS with an ESM-style default; take whichever the loader gives.
const jsQR = ((jsQRModule as unknown as { default?: typeof jsQRModule }).default ?? jsQRModule) as unknown as (data: Uint8ClampedArray, width: number, height: number, opts?: { inversionAttempts?: 'dontInvert' | 'onlyInvert' | 'attemptBoth' | 'invertFirst' }) => { data: string } | null;

export type Theme = 'dark' | 'light';

/** Pull the QR block out of terminal text: the run of lines made only of block characters. */
export function extractQrLines(screen: string): string[] {
  const lines = screen.replace(/\r/g, '').split('\n');
  let best: string[] = [];
  let cur: string[] = [];
  for (const l of lines) {
    if (/^[█▀▄ ]+$/.test(l) && /[█▀▄]/.test(l)) cur.push(l);
    else if (/^(##| {2})+ *$/.test(l) && l.includes('##')) cur.push(l);
    else {
      if (cur.length > best.length) best = cur;
      cur = [];
    }
  }
  return cur.length > best.length ? cur : best;
}

export function rasterize(lines: string[], theme: Theme, scale = 4): { data: Uint8ClampedArray; width: number; height: number; cells: boolean[][] } {
  const ascii = lines.some((l) => l.includes('#'));
  // cells[y][x] = true where the terminal paints foreground.
  const cells: boolean[][] = [];
  for (const l of lines) {
    if (ascii) {
      const row: boolean[] = [];
      for (let i = 0; i < l.length; i += 2) row.push(l[i] === '#');
      cells.push(row);
    } else {
      const top: boolean[] = [];
      const bottom: boolean[] = [];
      for (const ch of [...l]) {
        top.push(ch === '█' || ch === '▀');
        bottom.push(ch === '█' || ch === '▄');
      }
      cells.push(top, bottom);
    }
  }
  const margin = 6; // terminal background around the picture
  const w = Math.max(...cells.map((r) => r.length)) + 2 * margin;
  const h = cells.length + 2 * margin;
  const fg = theme === 'dark' ? 230 : 20;
  const bg = theme === 'dark' ? 20 : 240;
  const width = w * scale;
  const height = h * scale;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const cy = Math.floor(y / scale) - margin;
      const cx = Math.floor(x / scale) - margin;
      const on = cells[cy]?.[cx] ?? false;
      const v = on ? fg : bg;
      const i = (y * width + x) * 4;
      data[i] = data[i + 1] = data[i + 2] = v;
      data[i + 3] = 255;
    }
  }
  return { data, width, height, cells };
}

/** Decode terminal text as a camera would on a dark or light terminal; null if it does not decode. */
export function decodeTerminalQr(screen: string, theme: Theme = 'dark'): string | null {
  const lines = extractQrLines(screen);
  if (lines.length === 0) return null;
  const { data, width, height } = rasterize(lines, theme);
  const r = jsQR(data, width, height, { inversionAttempts: 'attemptBoth' });
  return r ? r.data : null;
}
