/**
 * Decode a QR the way a phone camera sees a terminal: rasterize the characters the terminal
 * shows (UTF-8 half blocks or ASCII "##"), with the terminal's own colours around them, and
 * run a real QR decoder on the pixels: jsQR, or ZXing (@zxing/library, the family behind the
 * web app's scanner).
 */
import * as zxingModule from '@zxing/library';
import type { LuminanceSource } from '@zxing/library';
import jsQRModule from 'jsqr';
import QRCode from 'qrcode';

// @zxing/library is CommonJS: under ESM its classes come on the default export.
const zxing = (zxingModule as unknown as { default?: typeof zxingModule }).default ?? zxingModule;
const { BinaryBitmap, HybridBinarizer, QRCodeReader, RGBLuminanceSource } = zxing;

// jsqr ships CommonJS with an ESM-style default; take whichever the loader gives.
const jsQR = ((jsQRModule as unknown as { default?: typeof jsQRModule }).default ?? jsQRModule) as unknown as (data: Uint8ClampedArray, width: number, height: number, opts?: { inversionAttempts?: 'dontInvert' | 'onlyInvert' | 'attemptBoth' | 'invertFirst' }) => { data: string } | null;

export type Theme = 'dark' | 'light';
export type DecoderName = 'jsqr' | 'zxing';
export const DECODERS: readonly DecoderName[] = ['jsqr', 'zxing'];

/** An RGBA picture, as a camera frame or canvas gives it. */
export interface Picture {
  data: Uint8ClampedArray;
  width: number;
  height: number;
}

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

function zxingOnce(source: LuminanceSource): string | null {
  try {
    return new QRCodeReader().decode(new BinaryBitmap(new HybridBinarizer(source))).getText();
  } catch {
    return null; // NotFound, Checksum or Format: no symbol read
  }
}

/**
 * Decode a picture with one decoder, trying both polarities as a scanner must for a terminal
 * (light modules are blocks: a light terminal shows an inverted QR). jsQR: its own
 * 'attemptBoth', which returns the first polarity that yields anything. ZXing: normal, then
 * the inverted picture. Returns the text, or null.
 */
export function decodePicture(pic: Picture, decoder: DecoderName): string | null {
  if (decoder === 'jsqr') return jsQR(pic.data, pic.width, pic.height, { inversionAttempts: 'attemptBoth' })?.data ?? null;
  const luma = new Uint8ClampedArray(pic.width * pic.height);
  for (let i = 0; i < luma.length; i++) luma[i] = pic.data[i * 4]!; // grey already
  const source = new RGBLuminanceSource(luma, pic.width, pic.height);
  return zxingOnce(source) ?? zxingOnce(source.invert());
}

/**
 * The `qrcode` package's own picture of the same symbol (one byte segment at M, as
 * agent/src/qr-render.ts encodes it): dark modules black on white with the standard's 4-module
 * quiet zone. A decoder that fails here fails on the symbol, not on our terminal rendering.
 */
export function libraryPicture(payload: string, scale = 4, margin = 4): Picture {
  const sym = QRCode.create([{ data: Buffer.from(payload, 'utf8'), mode: 'byte' }], { errorCorrectionLevel: 'M' });
  const n = sym.modules.size;
  const width = (n + 2 * margin) * scale;
  const data = new Uint8ClampedArray(width * width * 4).fill(255);
  for (let y = 0; y < width; y++) {
    for (let x = 0; x < width; x++) {
      const r = Math.floor(y / scale) - margin;
      const c = Math.floor(x / scale) - margin;
      if (r >= 0 && c >= 0 && r < n && c < n && sym.modules.data[r * n + c]) {
        const i = (y * width + x) * 4;
        data[i] = data[i + 1] = data[i + 2] = 0;
      }
    }
  }
  return { data, width, height: width };
}

/** Decode terminal text as a camera would on a dark or light terminal; null if it does not decode. */
export function decodeTerminalQr(screen: string, theme: Theme = 'dark', decoder: DecoderName = 'jsqr', scale = 4): string | null {
  const lines = extractQrLines(screen);
  if (lines.length === 0) return null;
  return decodePicture(rasterize(lines, theme, scale), decoder);
}

/** Pixels a module over a camera's successive frames, nearest first after the usual 4. */
export const CAMERA_SCALES = [4, 3, 5, 2, 6, 7, 8] as const;

/**
 * Read terminal text as a scanning loop does, frame after frame at different distances: the
 * first scale at which `decoder` returns `payload`. When none does, `symbolFault` says whether
 * the decoder also misses the `qrcode` package's own picture of the symbol at every one of
 * those scales (then the symbol defeats that decoder, not our rendering: docs/BENCHMARKS.md
 * found one such payload in 2,000 for ZXing).
 */
export function scanLikeACamera(screen: string, theme: Theme, decoder: DecoderName, payload: string): { scale: number | null; symbolFault: boolean } {
  const lines = extractQrLines(screen);
  for (const scale of CAMERA_SCALES) if (lines.length > 0 && decodePicture(rasterize(lines, theme, scale), decoder) === payload) return { scale, symbolFault: false };
  return { scale: null, symbolFault: CAMERA_SCALES.every((scale) => decodePicture(libraryPicture(payload, scale), decoder) !== payload) };
}
