/**
 * The phone app's loading path, before and after, side by side in one run (issue 11 "the app is
 * fast to open", issue 17 cold start / service worker / Lighthouse): `make bench-app`.
 *
 * "before" is ionic-app at a git commit (default HEAD) built in a worktree (/tmp/qra-before);
 * "after" is ionic-app/dist of this tree (`make app`). Both are served by the same plain static
 * server (test/support/static-server.ts over relay/src/static.ts, gzip/brotli), each on its own
 * loopback origin, to real Chromium (/usr/bin/chromium, playwright-core, fake camera).
 *
 * Network: Lighthouse's mobile throttling (DevTools "Fast 3G", which Lighthouse 12 calls
 * mobileSlow4G: node_modules/@paulirish/trace_engine/models/trace/lantern/simulation/Constants.js):
 * 150 ms RTT × 3.75 = 562.5 ms request latency, 1.6 Mbit/s × 0.9 down, 750 kbit/s × 0.9 up, applied
 * as Lighthouse's core/lib/emulation.js does with CDP Network.emulateNetworkConditions; CPU
 * Emulation.setCPUThrottlingRate 4. Throttling applies to the page's requests (a service
 * worker's own fetches are a separate CDP target).
 *
 *   bytes before the scanner is usable: every byte the static server wrote (headers + compressed
 *       bodies) from navigation until the scanner's video is live with the decoder loaded
 *   cold:  a person with a device key and an enrolled host (IndexedDB) but no HTTP cache, no
 *          service worker, no Cache Storage; navigation → video live. A build that opens the
 *          camera by itself for such a person (the start screen) is left to do so; one that does
 *          not gets "Scan QR code" clicked as soon as it is enabled, as a person would tap it
 *   warm:  the same with the service worker installed and its cache filled. Also on the page's
 *          own clock (navigation start → the qrauth:camera-live mark: play() resolved), without the time
 *          Playwright takes to see the picture
 *   warm, worker stopped: the same after CDP ServiceWorker.stopAllWorkers, as a phone stops an
 *          app's worker a while after its last use: the worker starts again for the open
 *   warm, nothing of the bench's in the page: the same, watched only by one DevTools evaluation
 *          waiting for the qrauth:camera-shown mark (the first picture on screen; builds before it:
 *          camera-live), on the page's clock
 *   hanging: warm, but every network request stalls (never answered): navigation → the Scan
 *       screen's "Scan QR code" button on screen (the start screen or Ionic's Scan page)
 *   first visit: a fresh profile opens the app and makes its key; bytes until nothing has been
 *       requested for 3 s (the service worker's own downloads included)
 *
 * Flags: --before <commit> (default HEAD; `none`: this tree only), --runs N (default 5), --cpu N (CPU slowdown, default
 * 4), --lighthouse (also run Lighthouse 12, mobile preset, on both; CHROME_PATH=/usr/bin/chromium), --trace FILE
 * (a Chromium trace of the first warm open, for DevTools' Performance panel).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type CDPSession, type Page, chromium } from 'playwright-core';
import { blankFrame, CHROMIUM_PATH, launchChromium, madeUpHostRecord, newAppContext, storeHostsScript, writeY4m } from '../test/support/browser.js';
import { stopServiceWorkers } from '../test/support/service-worker.js';
import { type StaticServer, startStaticServer } from '../test/support/static-server.js';
import { ROOT, sleep, summarize } from './lib.js';
// Lighthouse's own CPU benchmark, the one its reports and DevTools' calibration use (no exports map: a deep import).
import { pageFunctions } from 'lighthouse/core/lib/page-functions.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const FAST_3G = {
  offline: false,
  latency: 150 * 3.75,
  downloadThroughput: Math.floor((1.6 * 1024 * 0.9 * 1024) / 8),
  uploadThroughput: Math.floor((750 * 0.9 * 1024) / 8),
};
/**
 * --cpu N (default 4, Lighthouse's mobile preset), or --cpu mid / --cpu low: a slowdown calibrated
 * on this machine in this run, as DevTools' CPU calibration (CalibrationController.ts) does: it
 * takes a mid-tier phone (Pixel 5) to score 1000 and a low-tier one (Moto G Power 2022) 264 on
 * Lighthouse's benchmarkIndex (lighthouse/core/lib/page-functions.js, computeBenchmarkIndex), so on
 * a machine scoring B the slowdowns are B/1000 and B/264. B is measured in an unthrottled blank
 * page at the start (median of three) and printed with the figures.
 */
const CPU_ARG = arg('--cpu') ?? '4';
const CPU_TIERS: Record<string, number> = { mid: 1000, low: 264 };
if (!Object.hasOwn(CPU_TIERS, CPU_ARG) && !(Number(CPU_ARG) >= 1 && Number(CPU_ARG) <= 20)) {
  throw new Error(`--cpu: mid, low, or a slowdown from 1 to 20, not ${CPU_ARG}`);
}
/** Set in main() (a calibrated tier needs the browser). */
let CPU_SLOWDOWN = Number(CPU_ARG);
let benchmarkIndex = NaN;

/** Lighthouse's benchmarkIndex of this machine: median of three, each in a fresh blank page without throttling. */
async function measureBenchmarkIndex(browser: Browser): Promise<number> {
  const context = await browser.newContext();
  try {
    const xs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const page = await context.newPage();
      xs.push(await page.evaluate(`(${pageFunctions.computeBenchmarkIndex.toString()})()`));
      await page.close();
    }
    return median(xs);
  } finally {
    await context.close();
  }
}

const RUNS = Number(arg('--runs') ?? 5);
/** --trace FILE: a Chromium trace of the first warm open (of the last build measured). */
const TRACE = arg('--trace');
const CAMERA_FPS = 30;
const BEFORE_COMMIT = arg('--before') ?? 'HEAD';
const WORKTREE = '/tmp/qra-before';

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${r.stderr}\n${r.stdout}`.slice(-4000));
  return r.stdout;
}

/**
 * ionic-app at `commit`, built once into the worktree. The worktree borrows this tree's
 * node_modules, and this tree's protocol/src (the app imports it; HEAD's app may need protocol
 * changes not yet committed): the bytes measured are the app's.
 */
function buildBefore(commit: string): string | null {
  if (commit === 'none') return null;
  const sha = sh('git', ['rev-parse', commit], ROOT).trim();
  if (!existsSync(WORKTREE)) {
    sh('git', ['worktree', 'add', '--detach', WORKTREE, sha], ROOT);
    symlinkSync(join(ROOT, 'node_modules'), join(WORKTREE, 'node_modules'));
    symlinkSync(join(ROOT, 'ionic-app', 'node_modules'), join(WORKTREE, 'ionic-app', 'node_modules'));
  }
  const at = sh('git', ['rev-parse', 'HEAD'], WORKTREE).trim();
  if (at !== sha) throw new Error(`${WORKTREE} is at ${at}, not ${sha}: remove it (git worktree remove --force ${WORKTREE}) and run again`);
  const dist = join(WORKTREE, 'ionic-app', 'dist');
  if (!existsSync(join(dist, 'index.html'))) {
    rmSync(join(WORKTREE, 'protocol', 'src'), { recursive: true, force: true });
    cpSync(join(ROOT, 'protocol', 'src'), join(WORKTREE, 'protocol', 'src'), { recursive: true });
    sh('npx', ['vite', 'build'], join(WORKTREE, 'ionic-app'), { ...process.env, NODE_ENV: 'production' });
  }
  console.log(`before: ionic-app at ${sha.slice(0, 10)} (${WORKTREE})`);
  return dist;
}

/** A visible element of the app (Ionic keeps hidden pages in the DOM; the start screen has no .ion-page). */
const shown = (page: Page, testId: string) => page.locator(`[data-testid="${testId}"]:visible`);

async function throttle(page: Page): Promise<CDPSession> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', FAST_3G);
  await cdp.send('Emulation.setCPUThrottlingRate', { rate: CPU_SLOWDOWN });
  return cdp;
}

/** Waits until the server has had no request for `quietMs` (the page and its worker are done). */
async function quiet(server: StaticServer, quietMs: number, maxMs = 60_000): Promise<void> {
  const end = Date.now() + maxMs;
  let seen = server.requests.length;
  let since = Date.now();
  while (Date.now() < end) {
    await sleep(250);
    if (server.requests.length !== seen) {
      seen = server.requests.length;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}

async function serviceWorkerControls(page: Page): Promise<void> {
  // A function, not a string: a string would be eval'd, which the app's CSP forbids.
  type SwGlobal = { navigator: { serviceWorker: { controller: { state: string } | null } } };
  await page.waitForFunction(() => (globalThis as unknown as SwGlobal).navigator.serviceWorker.controller?.state === 'activated', undefined, { timeout: 60_000 });
}

interface Visit {
  ms: number;
  bytes: number;
  /** The app's performance marks (qrauth:start-screen, :camera-requested, :camera-live), ms from navigation; builds without them have none. */
  marks: Record<string, number>;
}

/** What the quiet warm open waits for: the first picture on screen where the build marks it (from 09def3b on), else play() resolved. */
function quietMarkOf(dist: string): string {
  const dir = join(dist, 'assets');
  return readdirSync(dir).some((f) => f.endsWith('.js') && readFileSync(join(dir, f), 'utf8').includes('qrauth:camera-shown')) ? 'qrauth:camera-shown' : 'qrauth:camera-live';
}

/** The build marks when it has decided whether to open the camera by itself (data-start-check on the panel); it then opens it for a person with an enrolled host. */
function opensCameraItself(dist: string): boolean {
  const dir = join(dist, 'assets');
  return readdirSync(dir).some((f) => f.endsWith('.js') && readFileSync(join(dir, f), 'utf8').includes('startCheck'));
}

/**
 * Navigation → scanner live (the build opening the camera by itself, or "Scan QR code" clicked as
 * soon as it can be). `stopWorker`: the service worker is stopped first (a phone's, a while unused).
 */
async function toCameraReady(context: BrowserContext, server: StaticServer, cold: boolean, opensItself: boolean, stopWorker = false, tracePath?: string): Promise<Visit> {
  const page = await context.newPage();
  const cdp = await throttle(page);
  if (tracePath) await startTrace(cdp);
  // Before t0: waits until Chromium reports the worker stopped (throws if it does not within 10 s).
  if (stopWorker) await stopServiceWorkers(cdp);
  // Network.clearBrowserCache does not reach a Playwright (incognito) context's cache: bypass it.
  if (cold) await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  const bytes0 = server.bytesSent();
  const t0 = Date.now();
  await page.goto(`${server.origin}/`, { waitUntil: 'commit' });
  const button = shown(page, 'scan-camera');
  await button.waitFor({ timeout: 60_000 });
  // A build that opens the camera by itself decides first (the panel's data-start-check); a
  // person taps only when it did not open.
  if (opensItself) await page.locator('.scan-panel[data-start-check="done"]').waitFor({ timeout: 60_000 });
  const scanner = page.getByTestId('scanner');
  if (!(await scanner.isVisible())) {
    // Builds that open the camera by themselves without that mark (c633aca's Scan page): the
    // tap and the camera opening race; whichever comes first opens the view.
    const tapped = button.click({ timeout: 60_000 }).catch(() => {});
    await Promise.race([tapped, scanner.waitFor({ timeout: 60_000 })]);
  }
  await page.locator('[data-testid="scanner-video"][data-live="yes"]').waitFor({ timeout: 60_000 });
  const ms = Date.now() - t0;
  // A string: the bench's tsconfig has no DOM types.
  const marks = await page.evaluate<Record<string, number>>(`(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const timing = nav ? { 'html:received': nav.responseEnd, 'html:parsed': nav.domInteractive } : {};
    return { ...timing, ...Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime])) };
  })()`);
  const visit = { ms, bytes: server.bytesSent() - bytes0, marks };
  if (tracePath) await endTrace(cdp, tracePath);
  await page.close();
  return visit;
}

/** A Chromium trace of one visit (--trace FILE), for chrome://tracing or DevTools' Performance panel. */
async function startTrace(cdp: CDPSession): Promise<void> {
  await cdp.send('Tracing.start', {
    transferMode: 'ReturnAsStream',
    traceConfig: {
      includedCategories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing', 'loading', 'v8.execute', 'v8', 'blink', 'toplevel', 'disabled-by-default-devtools.timeline.frame', 'navigation', 'ServiceWorker', 'browser', 'media'],
    },
  });
}

async function endTrace(cdp: CDPSession, path: string): Promise<void> {
  const done = new Promise<string>((resolve) => cdp.once('Tracing.tracingComplete', (e: { stream?: string }) => resolve(e.stream ?? '')));
  await cdp.send('Tracing.end');
  const stream = await done;
  const parts: string[] = [];
  for (;;) {
    const r = await cdp.send('IO.read', { handle: stream, size: 1 << 20 });
    parts.push(r.base64Encoded ? Buffer.from(r.data, 'base64').toString('utf8') : r.data);
    if (r.eof) break;
  }
  await cdp.send('IO.close', { handle: stream });
  writeFileSync(path, parts.join(''));
  console.log(`trace of a warm open written to ${path}`);
}

/**
 * A warm open seen only on the page's own clock, with nothing of the bench's running in the page
 * until the picture is live: no Playwright locator (its injected script is ~330 KB to evaluate,
 * 40 ms at CPU ×4, on the page's main thread, and its polling runs there too). One small
 * DevTools evaluation waits for the qrauth:camera-shown mark (a phone's own open has no such
 * guest). Builds without the mark are not measured so.
 */
async function quietWarm(context: BrowserContext, server: StaticServer, mark: string): Promise<Visit> {
  const page = await context.newPage();
  try {
    const cdp = await throttle(page);
    const bytes0 = server.bytesSent();
    const t0 = Date.now();
    await page.goto(`${server.origin}/`, { waitUntil: 'commit' });
    // DevTools' evaluation is not held to the page's CSP (no eval for the app's own scripts).
    const live = cdp.send('Runtime.evaluate', {
      expression: `new Promise((resolve) => {
        const seen = () => performance.getEntriesByName(${JSON.stringify(mark)}).length > 0;
        if (seen()) return resolve(true);
        new PerformanceObserver((_, o) => { if (seen()) { o.disconnect(); resolve(true); } }).observe({ type: 'mark', buffered: true });
      })`,
      awaitPromise: true,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([live, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${mark} mark within 60 s`)), 60_000)))]).finally(() => clearTimeout(timer));
    if (r.exceptionDetails) throw new Error(`waiting for the mark failed in the page: ${r.exceptionDetails.text}`);
    const ms = Date.now() - t0;
    const marks = await page.evaluate<Record<string, number>>(`(() => Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime])))()`);
    return { ms, bytes: server.bytesSent() - bytes0, marks };
  } finally {
    await page.close();
  }
}

/** A screen's time on the page's own clock: navigation → its first contentful paint. */
async function firstPaint(page: Page): Promise<number> {
  type PaintGlobal = { performance: { getEntriesByName(n: string): Array<{ startTime: number }> } };
  const h = await page.waitForFunction(() => (globalThis as unknown as PaintGlobal).performance.getEntriesByName('first-contentful-paint')[0]?.startTime, undefined, { timeout: 30_000 });
  return (await h.jsonValue()) as number;
}

interface Reopen {
  /** navigation → "Scan QR code" seen by Playwright (wall clock) */
  ms: number;
  /** the same on the page's clock: navigation → first contentful paint (the Scan screen) */
  paint: number;
}

/** Reopen with every request left unanswered: navigation → the Scan page on screen. */
async function reopenOnHangingNetwork(context: BrowserContext, server: StaticServer): Promise<Reopen> {
  await context.route('**/*', () => {
    /* never answered */
  });
  const page = await context.newPage();
  await throttle(page);
  const t0 = Date.now();
  void page.goto(`${server.origin}/`).catch(() => {});
  // A timeout is a failed run, not a 30 s figure: it throws.
  await shown(page, 'scan-camera').waitFor({ timeout: 30_000 });
  const ms = Date.now() - t0;
  const paint = await firstPaint(page);
  await page.close();
  await context.unrouteAll({ behavior: 'ignoreErrors' });
  return { ms, paint };
}

/** Forgets the app's code (service worker, Cache Storage; the HTTP cache is bypassed) but keeps its data (IndexedDB). */
async function forgetCode(context: BrowserContext, server: StaticServer): Promise<void> {
  const page = await context.newPage();
  await page.goto(`${server.origin}/manifest.webmanifest`);
  await page.evaluate(`(async () => {
    for (const r of await navigator.serviceWorker.getRegistrations()) await r.unregister();
    for (const k of await caches.keys()) await caches.delete(k);
  })()`);
  await page.close();
}

interface Figures {
  firstVisitBytes: number;
  firstVisitResponses: number;
  assetsFetchedTwice: number;
  cold: Visit[];
  warm: Visit[];
  warmStopped: Visit[];
  /** Warm, nothing of the bench's in the page (builds with the camera-live mark only). */
  warmQuiet: Visit[];
  hanging: Reopen[];
}

async function firstVisit(browser: Browser, server: StaticServer): Promise<{ context: BrowserContext; bytes: number; responses: number; twice: number }> {
  const context = await newAppContext(browser, server.origin);
  const start = server.requests.length;
  const bytes0 = server.bytesSent();
  const page = await context.newPage();
  await page.goto(`${server.origin}/`);
  await page.getByTestId('device-name-input').locator('input').fill('Bench phone');
  await page.getByTestId('create-device').click();
  await shown(page, 'page-scan').waitFor({ timeout: 60_000 });
  // The host the bench's phone has enrolled (a made-up one: the bench logs in nowhere).
  await page.evaluate(storeHostsScript([madeUpHostRecord(new Uint8Array(32).fill(7), 'bench-01')]));
  await serviceWorkerControls(page);
  await quiet(server, 3000);
  const paths = server.requests.slice(start);
  const counts = new Map<string, number>();
  for (const p of paths) counts.set(p, (counts.get(p) ?? 0) + 1);
  const twice = [...counts].filter(([p, n]) => p.startsWith('/assets/') && n > 1).length;
  await page.close();
  return { context, bytes: server.bytesSent() - bytes0, responses: paths.length, twice };
}

async function measure(browser: Browser, server: StaticServer, figures: Figures, opensItself: boolean, quietMark: string): Promise<void> {
  const first = await firstVisit(browser, server);
  figures.firstVisitBytes = first.bytes;
  figures.firstVisitResponses = first.responses;
  figures.assetsFetchedTwice = first.twice;
  const context = first.context;
  await forgetCode(context, server);
  figures.cold.push(await toCameraReady(context, server, true, opensItself));
  // Let the worker install and fill its cache (its downloads are not throttled).
  const page = await context.newPage();
  await page.goto(`${server.origin}/`);
  await serviceWorkerControls(page);
  await quiet(server, 3000);
  await page.close();
  figures.warm.push(await toCameraReady(context, server, false, opensItself));
  figures.warmStopped.push(await toCameraReady(context, server, false, opensItself, true));
  if ('qrauth:camera-live' in figures.warm.at(-1)!.marks) figures.warmQuiet.push(await quietWarm(context, server, quietMark));
  // The traced open is one more, left out of the figures (tracing slows the page down).
  if (TRACE && figures.warm.length === 1) await toCameraReady(context, server, false, opensItself, false, TRACE);
  figures.hanging.push(await reopenOnHangingNetwork(context, server));
  await context.close();
}

/**
 * The floor of this browser and throttling: a page of one button and nothing else, on loopback
 * (no network throttling: a service worker's answer is local too), CPU ×4: open → button visible,
 * measured as the hanging reopen is.
 */
async function floor(browser: Browser, runs: number): Promise<Reopen[]> {
  const dir = mkdtempSync(join(tmpdir(), 'qra-floor-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>floor</title></head><body><button data-testid="scan-camera">Scan QR code</button></body></html>');
  const server = await startStaticServer(dir);
  const context = await browser.newContext({ viewport: { width: 360, height: 640 } });
  const out: Reopen[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: CPU_SLOWDOWN });
      const t0 = Date.now();
      void page.goto(`${server.origin}/`).catch(() => {});
      await shown(page, 'scan-camera').waitFor({ timeout: 30_000 });
      const ms = Date.now() - t0;
      out.push({ ms, paint: await firstPaint(page) });
      await page.close();
    }
  } finally {
    await context.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
/** Median of one mark (or a difference of two) over the visits that have it. */
function markMedian(visits: Visit[], mark: string, from?: string): string {
  const xs = visits.filter((v) => mark in v.marks && (!from || from in v.marks)).map((v) => v.marks[mark]! - (from ? v.marks[from]! : 0));
  return xs.length ? `${Math.round(median(xs))} ms` : '—';
}
const median = (xs: number[]) => summarize(xs).p50;

interface LighthouseFigures {
  score: number;
  lcp: number;
  fcp: number;
  tbt: number;
  bytes: number;
  /** Lighthouse's measure of this machine's CPU (lhr.environment.benchmarkIndex) */
  benchmarkIndex: number;
}

/**
 * Lighthouse 12 (mobile preset, its own simulated throttling) on `url`. It runs in its own
 * process group, which is killed whole after LIGHTHOUSE_MS, so a run that hangs leaves no
 * Chromium behind. `profile`: a Chromium profile to reuse (a returning person: device key and
 * service worker kept, --disable-storage-reset); without it a fresh profile (a first visit).
 */
const LIGHTHOUSE_MS = 180_000;
async function lighthouse(url: string, label: string, profile?: string): Promise<LighthouseFigures | string> {
  const outDir = mkdtempSync(join(tmpdir(), 'qra-lh-'));
  const out = join(outDir, `${label}.json`);
  const chromeFlags = ['--headless=new', '--no-sandbox', '--disable-gpu', ...(profile ? [`--user-data-dir=${profile}`] : [])].join(' ');
  const args = ['lighthouse', url, '--only-categories=performance', '--output=json', `--output-path=${out}`, '--quiet', `--chrome-flags=${chromeFlags}`];
  if (profile) args.push('--disable-storage-reset');
  const child = spawn('npx', args, { cwd: ROOT, env: { ...process.env, CHROME_PATH: CHROMIUM_PATH }, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const code = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
      resolve(`killed after ${LIGHTHOUSE_MS / 1000} s`);
    }, LIGHTHOUSE_MS);
    child.on('exit', (c, sig) => {
      clearTimeout(timer);
      resolve(c ?? String(sig));
    });
  });
  try {
    if (code !== 0 || !existsSync(out)) return `lighthouse failed (${code}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`;
    const lhr = JSON.parse(readFileSync(out, 'utf8')) as {
      categories: { performance: { score: number | null } };
      audits: Record<string, { numericValue?: number }>;
      runtimeError?: { message?: string };
      environment?: { benchmarkIndex?: number };
    };
    if (lhr.runtimeError || lhr.categories.performance.score === null) return `lighthouse: ${lhr.runtimeError?.message ?? 'no score'}`;
    return {
      score: Math.round(lhr.categories.performance.score * 100),
      lcp: lhr.audits['largest-contentful-paint']?.numericValue ?? NaN,
      fcp: lhr.audits['first-contentful-paint']?.numericValue ?? NaN,
      tbt: lhr.audits['total-blocking-time']?.numericValue ?? NaN,
      bytes: lhr.audits['total-byte-weight']?.numericValue ?? NaN,
      benchmarkIndex: lhr.environment?.benchmarkIndex ?? NaN,
    };
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

/** A Chromium profile where the app at `origin` has its device key, its service worker and its cache: a returning person. */
async function returningProfile(origin: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'qra-lh-profile-'));
  const context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM_PATH, args: ['--headless=new', '--no-sandbox', '--disable-gpu'], viewport: { width: 360, height: 640 } });
  try {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.getByTestId('device-name-input').locator('input').fill('Lighthouse phone');
    await page.getByTestId('create-device').click();
    await shown(page, 'page-scan').waitFor({ timeout: 60_000 });
    await serviceWorkerControls(page);
    await page.waitForTimeout(3000);
  } finally {
    await context.close();
  }
  return dir;
}

async function main(): Promise<void> {
  const beforeDist = buildBefore(BEFORE_COMMIT);
  const afterDist = join(ROOT, 'ionic-app', 'dist');
  if (!existsSync(join(afterDist, 'index.html'))) throw new Error('no ionic-app/dist: run make app');
  const camDir = mkdtempSync(join(tmpdir(), 'qra-bench-cam-'));
  const camFile = join(camDir, 'camera.y4m');
  // At 30 frames a second, as a phone's camera gives them (the tests' fake camera runs at 10).
  writeY4m(camFile, blankFrame(), undefined, undefined, 1, CAMERA_FPS);
  const dists = { before: beforeDist, after: afterDist };
  const builds = (['before', 'after'] as const).filter((w) => dists[w] !== null);
  const servers: Partial<Record<'before' | 'after', StaticServer>> = {};
  for (const w of builds) servers[w] = await startStaticServer(dists[w]!);
  const opensItself = { before: beforeDist !== null && opensCameraItself(beforeDist), after: opensCameraItself(afterDist) };
  const browser = await launchChromium(camFile);
  benchmarkIndex = await measureBenchmarkIndex(browser);
  if (Object.hasOwn(CPU_TIERS, CPU_ARG)) {
    const rate = benchmarkIndex / CPU_TIERS[CPU_ARG]!;
    // DevTools says "device too weak" here; the bench runs unthrottled and says so.
    if (rate < 1) console.log(`warning: this machine (benchmarkIndex ${Math.round(benchmarkIndex)}) is slower than a ${CPU_ARG}-tier phone (${CPU_TIERS[CPU_ARG]}): no throttling`);
    CPU_SLOWDOWN = Math.min(20, Math.max(1, Math.round(rate * 100) / 100));
  }
  console.log(`this machine: benchmarkIndex ${Math.round(benchmarkIndex)}; CPU ×${CPU_SLOWDOWN}${Object.hasOwn(CPU_TIERS, CPU_ARG) ? ` (${CPU_ARG}-tier phone, benchmarkIndex ${CPU_TIERS[CPU_ARG]}, taken as linear)` : ''}`);
  const figures: Record<'before' | 'after', Figures> = {
    before: { firstVisitBytes: 0, firstVisitResponses: 0, assetsFetchedTwice: 0, cold: [], warm: [], warmStopped: [], warmQuiet: [], hanging: [] },
    after: { firstVisitBytes: 0, firstVisitResponses: 0, assetsFetchedTwice: 0, cold: [], warm: [], warmStopped: [], warmQuiet: [], hanging: [] },
  };
  try {
    // Interleaved, so a busy moment of the machine hits both alike.
    for (let i = 0; i < RUNS; i++) {
      for (const which of builds) {
        await measure(browser, servers[which]!, figures[which], opensItself[which], quietMarkOf(dists[which]!));
        const f = figures[which];
        const steps = Object.entries(f.warm.at(-1)!.marks).map(([k, v]) => `${k.replace('qrauth:', '')} ${Math.round(v)}`).join(', ');
        console.log(`run ${i + 1} ${which}: cold ${f.cold.at(-1)!.ms} ms / ${kb(f.cold.at(-1)!.bytes)}, warm ${f.warm.at(-1)!.ms} ms (${steps || 'no marks'}), hanging ${f.hanging.at(-1)!.ms} ms (paint ${Math.round(f.hanging.at(-1)!.paint)})${f.warmQuiet.length ? `, warm with nothing of the bench's: live at ${Math.round(f.warmQuiet.at(-1)!.marks['qrauth:camera-live']!)}, shown at ${Math.round(f.warmQuiet.at(-1)!.marks['qrauth:camera-shown'] ?? NaN)}` : ''}`);
      }
    }
    const lh: Array<[string, LighthouseFigures | string]> = [];
    if (process.argv.includes('--lighthouse')) {
      for (const which of builds) {
        const origin = servers[which]!.origin;
        lh.push([`${which}, first visit`, await lighthouse(`${origin}/`, `${which}-first`)]);
        const profile = await returningProfile(origin);
        try {
          lh.push([`${which}, returning (device key, service worker)`, await lighthouse(`${origin}/`, `${which}-returning`, profile)]);
        } finally {
          rmSync(profile, { recursive: true, force: true });
        }
      }
    }
    const floorMs = await floor(browser, RUNS);
    // The machine moves (a shared VM): its score again, after the runs.
    const benchmarkIndexAfter = await measureBenchmarkIndex(browser);
    const cell = (w: 'before' | 'after', f: (x: Figures) => string) => (builds.includes(w) ? f(figures[w]) : '—');
    const row = (name: string, f: (x: Figures) => string) => `| ${name} | ${cell('before', f)} | ${cell('after', f)} |`;
    console.log(`\nChromium ${browser.version()}, Fast 3G (562.5 ms, ${FAST_3G.downloadThroughput} B/s down, ${FAST_3G.uploadThroughput} B/s up), CPU ×${CPU_SLOWDOWN} (benchmarkIndex ${Math.round(benchmarkIndex)} before the runs, ${Math.round(benchmarkIndexAfter)} after); median of ${RUNS}\n`);
    console.log('| | before | after |\n|---|---|---|');
    console.log(row('bytes before the scanner is usable (cold, compressed)', (x) => kb(median(x.cold.map((v) => v.bytes)))));
    console.log(row('cold: open → camera ready', (x) => `${median(x.cold.map((v) => v.ms))} ms`));
    console.log(row('… the same on the page\'s clock (navigation → picture live)', (x) => markMedian(x.cold, 'qrauth:camera-live')));
    console.log(row('warm (service worker): open → camera ready', (x) => `${median(x.warm.map((v) => v.ms))} ms`));
    console.log(row('… the same on the page\'s clock (navigation → picture live)', (x) => markMedian(x.warm, 'qrauth:camera-live')));
    console.log(row('… of it, warm: open → start screen up (page clock)', (x) => markMedian(x.warm, 'qrauth:start-screen')));
    console.log(row('… of it, warm: open → camera asked (page clock)', (x) => markMedian(x.warm, 'qrauth:camera-requested')));
    console.log(row('… of it, warm: camera asked → picture live (the camera\'s start)', (x) => markMedian(x.warm, 'qrauth:camera-live', 'qrauth:camera-requested')));
    console.log(row('warm, worker stopped: open → camera ready', (x) => `${median(x.warmStopped.map((v) => v.ms))} ms`));
    console.log(row('… the same on the page\'s clock (navigation → picture live)', (x) => markMedian(x.warmStopped, 'qrauth:camera-live')));
    console.log(row('warm, nothing of the bench in the page: navigation → picture live (page clock)', (x) => markMedian(x.warmQuiet, 'qrauth:camera-live')));
    console.log(row('… → first picture on screen (requestVideoFrameCallback)', (x) => markMedian(x.warmQuiet, 'qrauth:camera-shown')));
    console.log(row('… of it: start screen up / camera asked', (x) => `${markMedian(x.warmQuiet, 'qrauth:start-screen')} / ${markMedian(x.warmQuiet, 'qrauth:camera-requested')}`));
    console.log(row('… the same by the bench\'s clock (page.goto → DevTools sees the mark)', (x) => (x.warmQuiet.length ? `${median(x.warmQuiet.map((v) => v.ms))} ms` : '—')));
    console.log(row('bytes on a warm open', (x) => kb(median(x.warm.map((v) => v.bytes)))));
    console.log(row('reopen, every request stalled: open → Scan screen', (x) => `${median(x.hanging.map((v) => v.ms))} ms`));
    console.log(row('… the same on the page\'s clock (navigation → first contentful paint)', (x) => `${Math.round(median(x.hanging.map((v) => v.paint)))} ms`));
    console.log(`| floor: a one-button page, CPU ×${CPU_SLOWDOWN}: open → button | ${median(floorMs.map((v) => v.ms))} ms | (same) |`);
    console.log(`| … the same on the page's clock (first contentful paint) | ${Math.round(median(floorMs.map((v) => v.paint)))} ms | (same) |`);
    console.log(row('first visit: bytes (app + service worker)', (x) => kb(x.firstVisitBytes)));
    console.log(row('first visit: responses / hashed assets fetched twice', (x) => `${x.firstVisitResponses} / ${x.assetsFetchedTwice}`));
    for (const [k, v] of lh) {
      console.log(
        typeof v === 'string'
          ? `Lighthouse ${k}: ${v}`
          : `Lighthouse 12 mobile, ${k}: performance ${v.score}, FCP ${(v.fcp / 1000).toFixed(1)} s, LCP ${(v.lcp / 1000).toFixed(1)} s, TBT ${Math.round(v.tbt)} ms, total ${kb(v.bytes)} (benchmarkIndex ${Math.round(v.benchmarkIndex)})`,
      );
    }
  } finally {
    await browser.close();
    for (const w of builds) await servers[w]!.close();
    rmSync(camDir, { recursive: true, force: true });
  }
}

await main();
