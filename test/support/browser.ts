/**
 * Real Chromium for the app's tests (Debian's /usr/bin/chromium through playwright-core), with
 * a fake camera that shows a picture we make: a QR exactly as the ssh client printed it,
 * rasterized from the terminal's half blocks.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium } from 'playwright-core';
import jsQRModule from 'jsqr';
import { extractQrLines, rasterize, type Theme } from './qr-decode.js';
import { ROOT } from './system.js';

const jsQR = ((jsQRModule as unknown as { default?: typeof jsQRModule }).default ?? jsQRModule) as unknown as (
  data: Uint8ClampedArray,
  width: number,
  height: number,
  opts?: { inversionAttempts?: 'dontInvert' | 'onlyInvert' | 'attemptBoth' | 'invertFirst' },
) => { data: string } | null;

export const CHROMIUM_PATH = '/usr/bin/chromium';
export const APP_DIR = join(ROOT, 'ionic-app');
export const APP_DIST = join(APP_DIR, 'dist');
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'app');

/** 640×640: the web scanner asks for at least 576 px of height, or its promise never settles. */
export const FRAME_SIZE = 640;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

/** Builds ionic-app/dist when it is missing or older than the app's or the protocol's sources. */
export function ensureAppBuilt(): void {
  const index = join(APP_DIST, 'index.html');
  const sources = Math.max(newestMtime(APP_DIR), newestMtime(join(ROOT, 'protocol', 'src')));
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  // ava sets NODE_ENV=test, which would give a development build (no service worker).
  execFileSync('npm', ['run', 'build', '-w', 'ionic-app'], { cwd: ROOT, stdio: 'pipe', timeout: 180_000, env: { ...process.env, NODE_ENV: 'production' } });
}

export async function launchChromium(fakeVideoFile: string): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${fakeVideoFile}`,
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/**
 * A phone-sized (or desktop) context with the camera allowed for `origin`. Reduced motion (which
 * the app honours) makes screenshots show settled pages rather than transitions.
 */
export async function newAppContext(browser: Browser, origin: string, size = { width: 360, height: 640 }, colorScheme: 'light' | 'dark' = 'light'): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: size, colorScheme, reducedMotion: 'reduce', serviceWorkers: 'allow' });
  await context.grantPermissions(['camera'], { origin });
  return context;
}

/**
 * The terminal QR as a grayscale camera frame: dark modules on a light background (the theme
 * whose rendering decodes without inversion, as a phone camera would see the screen), centred.
 */
export function qrFrameFromTerminal(screen: string, expected: string, targetPx = 160): Uint8Array {
  const lines = extractQrLines(screen);
  if (lines.length === 0) throw new Error('no QR block in the terminal output');
  // The web scanner decodes only a centred box about half the preview wide, cropped tight: the code
  // and its quiet zone must sit well inside it (at 190 px an enrollment QR failed now and then, at
  // 280 px always; 160 px passed every run).
  const modules = Math.max(...lines.map((l) => (l.includes('#') ? l.length / 2 : [...l].length)));
  const scale = Math.max(2, Math.floor(targetPx / modules));
  let chosen: { data: Uint8ClampedArray; width: number; height: number } | null = null;
  // Like a person moving the phone closer or further: a few picture sizes, in both themes, until
  // one decodes without inversion (jsQR's sampling misses some codes at some exact scales).
  search: for (const s of [scale, scale - 1, scale + 1, scale - 2]) {
    for (const theme of ['light', 'dark'] as Theme[]) {
      if (s < 2) continue;
      const r = rasterize(lines, theme, s);
      if (jsQR(r.data, r.width, r.height, { inversionAttempts: 'dontInvert' })?.data === expected) {
        chosen = r;
        break search;
      }
    }
  }
  if (!chosen) throw new Error('the terminal QR does not decode without inversion in either theme');
  if (chosen.width > FRAME_SIZE || chosen.height > FRAME_SIZE) throw new Error(`QR picture ${chosen.width}x${chosen.height} is larger than the frame`);
  // Fill with the picture's own background (its corner pixel) so the quiet zone continues.
  const bg = chosen.data[0]!;
  const frame = new Uint8Array(FRAME_SIZE * FRAME_SIZE).fill(bg);
  const ox = Math.floor((FRAME_SIZE - chosen.width) / 2);
  const oy = Math.floor((FRAME_SIZE - chosen.height) / 2);
  for (let y = 0; y < chosen.height; y++) {
    for (let x = 0; x < chosen.width; x++) frame[(oy + y) * FRAME_SIZE + ox + x] = chosen.data[(y * chosen.width + x) * 4]!;
  }
  return frame;
}

/** A blank light frame for a camera that sees no code yet. */
export function blankFrame(): Uint8Array {
  return new Uint8Array(FRAME_SIZE * FRAME_SIZE).fill(235);
}

/** Writes a Y4M (4:2:0, grey: chroma 128) of a few identical frames for Chromium's fake camera. */
export function writeY4m(file: string, gray: Uint8Array, width = FRAME_SIZE, height = FRAME_SIZE, frames = 5): void {
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\n`, 'ascii');
  const chroma = Buffer.alloc((width / 2) * (height / 2) * 2, 128);
  const parts: Buffer[] = [header];
  for (let i = 0; i < frames; i++) parts.push(Buffer.from('FRAME\n', 'ascii'), Buffer.from(gray), chroma);
  writeFileSync(file, Buffer.concat(parts));
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
