/**
 * Real Chromium for the app's tests (Debian's /usr/bin/chromium through playwright-core), with
 * a fake camera that shows a picture we make: a QR exactly as the ssh client printed it,
 * rasterized from the terminal's half blocks.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import jsQRModule from 'jsqr';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { keyId, toB64url } from '../../protocol/src/index.js';
import type { PtyRun } from './pty.js';
import { extractQrLines, rasterize, type Theme } from './qr-decode.js';
import { type StaticServer, startStaticServer } from './static-server.js';
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

/** 640×640: sized for the plugin's web scanner the app once used (it asked for at least 576 px of height); the app's own view takes any size. */
export const FRAME_SIZE = 640;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

function appIsFresh(): boolean {
  const index = join(APP_DIST, 'index.html');
  const sources = Math.max(newestMtime(APP_DIR), newestMtime(join(ROOT, 'protocol', 'src')));
  return existsSync(index) && statSync(index).mtimeMs >= sources;
}

const BUILD_LOCK = join(APP_DIR, '.build-lock');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Builds ionic-app/dist when it is missing or older than the app's or the protocol's sources.
 * `make build` builds it before the tests; this covers `npx ava` on its own. ava runs test
 * files in parallel and two vite builds into one dist/ break each other (each empties it), so
 * a build holds a lock directory; the other waits and then finds the app fresh.
 */
export function ensureAppBuilt(): void {
  if (appIsFresh()) return;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      mkdirSync(BUILD_LOCK);
      writeFileSync(join(BUILD_LOCK, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(readFileSync(join(BUILD_LOCK, 'pid'), 'utf8'));
      } catch {
        /* the holder has not written its pid yet */
      }
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) rmSync(BUILD_LOCK, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`ionic-app build lock ${BUILD_LOCK} held too long (pid ${owner})`);
      Atomics.wait(sleeper, 0, 0, 200);
    }
  }
  try {
    if (appIsFresh()) return; // built by the holder we waited for
    // ava sets NODE_ENV=test, which would give a development build (no service worker).
    const r = spawnSync('npm', ['run', 'build', '-w', 'ionic-app'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000, env: { ...process.env, NODE_ENV: 'production' } });
    if (r.status !== 0) {
      const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
      throw new Error(`building ionic-app failed (${why}):\n${(r.stderr ?? '').slice(-4000)}\n${(r.stdout ?? '').slice(-2000)}`);
    }
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

/** An element of the app's page in view (pages sliding out keep their elements for a moment). */
export function visibleIn(page: Page, testId: string) {
  return page.locator(`.ion-page:not(.ion-page-hidden) [data-testid="${testId}"]`);
}

/**
 * Taps Approve on the login the app shows, checks it says Approved, then presses Enter in the
 * ssh client waiting on that login and checks the remote command printed `marker` and ssh exited 0.
 */
export async function approveAndFinishSsh(t: ExecutionContext, page: Page, run: PtyRun, marker: string): Promise<void> {
  await visibleIn(page, 'approve').click();
  await visibleIn(page, 'decision-result').waitFor();
  t.regex((await visibleIn(page, 'decision-result').textContent()) ?? '', /Approved/);
  run.type('\r');
  await run.waitFor(new RegExp(marker));
  t.is(await run.exited, 0);
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

/** The app as deployed, for its Chromium tests: see startAppInChromium. */
export interface AppInChromium {
  /** The app's build on a loopback origin of its own; the test's relay must allow-list `app.origin`. */
  app: StaticServer;
  browser: Browser;
  /** What Chromium's fake camera plays: a blank frame until a test writes a QR to it (writeY4m). */
  camFile: string;
  /** Closes Chromium and the static server and removes the camera file. */
  close(): Promise<void>;
}

/** Serves ionic-app/dist on its own origin (a plain static server) and launches Chromium with a blank fake camera. */
export async function startAppInChromium(camDirPrefix = 'qrcam-'): Promise<AppInChromium> {
  ensureAppBuilt();
  const app = await startStaticServer(APP_DIST);
  const camDir = mkdtempSync(join(tmpdir(), camDirPrefix));
  const removeCamDir = () => rmSync(camDir, { recursive: true, force: true });
  const camFile = join(camDir, 'camera.y4m');
  writeY4m(camFile, blankFrame());
  let browser: Browser;
  try {
    browser = await launchChromium(camFile);
  } catch (e) {
    await app.close();
    removeCamDir();
    throw e;
  }
  return {
    app,
    browser,
    camFile,
    async close() {
      await browser.close();
      await app.close();
      removeCamDir();
    },
  };
}

/** On the app's first start: names the phone, makes its device key and waits for the scan page. */
export async function createDevice(page: Page, name: string): Promise<void> {
  await page.getByTestId('device-name-input').locator('input').fill(name);
  await page.getByTestId('create-device').click();
  await page.getByTestId('page-scan').waitFor();
}

/** Evaluated in the app's page: the device's public key from the app's IndexedDB store (null before first start). */
export const READ_DEVICE_PUBLIC_KEY = `new Promise((resolve, reject) => {
  const open = indexedDB.open('qrauth', 1);
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const req = open.result.transaction('kv', 'readonly').objectStore('kv').get('device');
    req.onsuccess = () => { open.result.close(); resolve(req.result ? req.result.publicKey : null); };
    req.onerror = () => reject(req.error);
  };
})`;

/** Evaluated in the app's page: puts `value` under `key` in the app's IndexedDB store. */
export function putAppRecordScript(key: string, value: unknown): string {
  return `new Promise((resolve, reject) => {
    const open = indexedDB.open('qrauth', 1);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction('kv', 'readwrite');
      tx.objectStore('kv').put(${JSON.stringify(value)}, ${JSON.stringify(key)});
      tx.oncomplete = () => { open.result.close(); resolve(true); };
      tx.onerror = () => reject(tx.error);
    };
  })`;
}

/** Evaluated in the app's page: replaces the hosts the app trusts (as an enrollment leaves them). */
export const storeHostsScript = (hosts: unknown[]): string => putAppRecordScript('hosts', hosts);

/** The app's main chunk (React, Ionic, the pages), which the start screen loads behind itself. */
export const APP_CHUNK_RE = /\/assets\/main-[\w-]+\.js$/;

/**
 * Holds back the page's request for the app's main chunk (a slow network at the worst moment)
 * until the returned function is called; never called, the chunk never arrives. page.route does
 * not see what a service worker answers: use it in a context with service workers blocked.
 */
export async function holdAppChunk(page: Page): Promise<() => void> {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  await page.route(APP_CHUNK_RE, async (route) => {
    await held;
    await route.continue();
  });
  return release;
}

/**
 * A phone of its own for start-screen tests: a context with service workers blocked (so
 * page.route sees every request) and the camera allowed, a device key made on the welcome
 * screen, and one made-up trusted host `start-01` (key from `hostSeed`) behind a relay nobody
 * listens on: enough for the app to open at the start screen with the camera. Closed by teardown.
 */
export async function phoneWithMadeUpHost(
  t: ExecutionContext,
  browser: Browser,
  origin: string,
  hostSeed: Uint8Array,
  onPageError: (message: string) => void,
): Promise<{ page: Page; hostId: string }> {
  const { page, hostId } = await appPhone(t, browser, origin, { hostSeed, onPageError });
  return { page, hostId: hostId! };
}

/**
 * A phone in a context of its own (no service worker): the app opened, a device key made, and with
 * `hostSeed` one made-up host enrolled. `camera` (default true): the site may use the camera;
 * `initScripts` run before the app's code on every load.
 */
export async function appPhone(
  t: ExecutionContext,
  browser: Browser,
  origin: string,
  opts: { hostSeed?: Uint8Array; camera?: boolean; initScripts?: string[]; onPageError: (message: string) => void },
): Promise<{ page: Page; hostId?: string }> {
  const context = await browser.newContext({ viewport: { width: 360, height: 640 }, serviceWorkers: 'block', reducedMotion: 'reduce' });
  t.teardown(() => context.close());
  if (opts.camera ?? true) await context.grantPermissions(['camera'], { origin });
  const page = await context.newPage();
  page.on('pageerror', (e) => opts.onPageError(e.message));
  for (const script of opts.initScripts ?? []) await page.addInitScript(script);
  await page.goto(`${origin}/`);
  await createDevice(page, 'Start screen phone');
  if (!opts.hostSeed) return { page };
  const host = madeUpHostRecord(opts.hostSeed, 'start-01');
  await page.evaluate(storeHostsScript([host]));
  return { page, hostId: host.hostId };
}

/** A host record as an enrollment leaves it in the app, for a host key made from `hostSeed` (no such host runs). */
export function madeUpHostRecord(hostSeed: Uint8Array, hostname: string): { hostId: string; hostPub: string; hostname: string; relayUrl: string; enrolledAt: number } {
  const hostKey = nodeCrypto.ed25519FromSeed(hostSeed);
  return { hostId: keyId(nodeCrypto, hostKey.publicKey), hostPub: toB64url(hostKey.publicKey), hostname, relayUrl: 'http://127.0.0.1:9', enrolledAt: 1_767_225_600_000 };
}

/** Closes the app's camera view when it is open (Escape, as a person with a keyboard would). */
export async function closeScannerIfOpen(page: Page): Promise<void> {
  if (await page.getByTestId('scanner').isVisible()) {
    await page.keyboard.press('Escape');
    await page.getByTestId('scanner').waitFor({ state: 'detached' });
  }
}

/**
 * Pastes a QR's text into the app's Scan page, as a person without a camera would, and submits
 * it. With a host enrolled the camera opens by itself when the app opens; it is closed first.
 */
export async function pasteIntoApp(page: Page, text: string): Promise<void> {
  await closeScannerIfOpen(page);
  await page.getByTestId('tab-scan').click();
  await page.locator('.ion-page:not(.ion-page-hidden)[data-testid="page-scan"]').waitFor();
  await page.locator('.scan-panel[data-start-check="done"]').waitFor();
  await closeScannerIfOpen(page);
  await visibleIn(page, 'payload-input').locator('textarea').fill(text);
  await visibleIn(page, 'payload-submit').click();
}

/** For test.afterEach.always: a failed test leaves a screenshot and the visible page's text behind. */
export async function reportFailedPage(t: ExecutionContext, page: Page | undefined, artifactPrefix: string): Promise<void> {
  if (t.passed || !page) return;
  const name = t.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  await page.screenshot({ path: artifactPath(`${artifactPrefix}${name}.png`) }).catch(() => {});
  t.log(`visible page text: ${(await page.locator('.ion-page:not(.ion-page-hidden)').last().innerText().catch(() => '?')).slice(0, 800)}`);
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
 * The terminal QR as grayscale camera frames: dark modules on a light background (the theme
 * whose rendering decodes without inversion, as a phone camera would see the screen), near the
 * centre. Several frames, each a slightly different size and position, like a phone held in a
 * hand: the scanner (ZXing) samples each picture its own way, and with identical frames a code it
 * happened to misread once was misread on every frame until the test timed out (seen about once
 * in 17 runs while the machine was busy).
 */
export function qrFramesFromTerminal(screen: string, expected: string, targetPx = 160): Uint8Array[] {
  const lines = extractQrLines(screen);
  if (lines.length === 0) throw new Error('no QR block in the terminal output');
  // Sized for the plugin's web scanner the app once used, which decoded only a centred box about
  // half the preview wide: the code and its quiet zone must sit well inside it (at 190 px an
  // enrollment QR failed now and then, at 280 px always; 160 px passed every run). The app's own
  // view reads the whole frame; the size stays.
  const modules = Math.max(...lines.map((l) => (l.includes('#') ? l.length / 2 : [...l].length)));
  const scale = Math.max(2, Math.floor(targetPx / modules));
  const pictures: Array<{ data: Uint8ClampedArray; width: number; height: number }> = [];
  // Each size in the theme that decodes without inversion (jsQR's sampling misses some codes at
  // some exact scales); never larger than targetPx allows.
  for (const s of [scale, scale - 1, scale - 2]) {
    if (s < 2) continue;
    for (const theme of ['light', 'dark'] as Theme[]) {
      const r = rasterize(lines, theme, s);
      if (jsQR(r.data, r.width, r.height, { inversionAttempts: 'dontInvert' })?.data === expected) {
        pictures.push(r);
        break;
      }
    }
  }
  if (pictures.length === 0) throw new Error('the terminal QR does not decode without inversion in either theme');
  return framesOf(pictures);
}

/**
 * The terminal QR exactly as a terminal of `theme` shows it, whether or not it decodes without
 * inversion: 'light' (dark blocks on a light background) is an inverted QR, as macOS Terminal's
 * default theme shows it; 'dark' is the normal polarity. Three sizes, three positions each.
 */
export function qrFramesInTheme(screen: string, theme: Theme, targetPx = 160): Uint8Array[] {
  const lines = extractQrLines(screen);
  if (lines.length === 0) throw new Error('no QR block in the terminal output');
  const modules = Math.max(...lines.map((l) => (l.includes('#') ? l.length / 2 : [...l].length)));
  const scale = Math.max(2, Math.floor(targetPx / modules));
  return framesOf([scale, scale - 1, scale - 2].filter((s) => s >= 2).map((s) => rasterize(lines, theme, s)));
}

function framesOf(pictures: Array<{ data: Uint8ClampedArray; width: number; height: number }>): Uint8Array[] {
  const offsets = [
    [0, 0],
    [3, -2],
    [-2, 3],
  ];
  const frames: Uint8Array[] = [];
  for (const pic of pictures) {
    if (pic.width + 6 > FRAME_SIZE || pic.height + 6 > FRAME_SIZE) throw new Error(`QR picture ${pic.width}x${pic.height} is larger than the frame`);
    for (const [dx, dy] of offsets) {
      // Fill with the picture's own background (its corner pixel) so the quiet zone continues.
      const bg = pic.data[0]!;
      const frame = new Uint8Array(FRAME_SIZE * FRAME_SIZE).fill(bg);
      const ox = Math.floor((FRAME_SIZE - pic.width) / 2) + dx!;
      const oy = Math.floor((FRAME_SIZE - pic.height) / 2) + dy!;
      for (let y = 0; y < pic.height; y++) {
        for (let x = 0; x < pic.width; x++) frame[(oy + y) * FRAME_SIZE + ox + x] = pic.data[(y * pic.width + x) * 4]!;
      }
      frames.push(frame);
    }
  }
  return frames;
}

/** A blank light frame for a camera that sees no code yet. */
export function blankFrame(): Uint8Array {
  return new Uint8Array(FRAME_SIZE * FRAME_SIZE).fill(235);
}

/**
 * Writes a Y4M (4:2:0, grey: chroma 128) for Chromium's fake camera, which plays it in a loop at
 * `fps` frames a second (10 for the tests; a phone's camera gives 30): each picture given is
 * held for `hold` frames.
 */
export function writeY4m(file: string, pictures: Uint8Array | Uint8Array[], width = FRAME_SIZE, height = FRAME_SIZE, hold = 3, fps = 10): void {
  if (!Number.isInteger(fps) || fps < 1 || fps > 60) throw new Error(`writeY4m: fps from 1 to 60, not ${fps}`);
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`, 'ascii');
  const chroma = Buffer.alloc((width / 2) * (height / 2) * 2, 128);
  const parts: Buffer[] = [header];
  for (const gray of Array.isArray(pictures) ? pictures : [pictures]) {
    for (let i = 0; i < hold; i++) parts.push(Buffer.from('FRAME\n', 'ascii'), Buffer.from(gray), chroma);
  }
  writeFileSync(file, Buffer.concat(parts));
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
