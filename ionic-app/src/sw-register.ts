import { isNativePlatform } from './data/native';

let pagePreloaded: () => void = () => {};
const preloaded = new Promise<void>((resolve) => {
  pagePreloaded = resolve;
});

/** Same-origin files this page has finished loading (performance entries are written on completion). */
function loadedPaths(): string[] {
  return performance
    .getEntriesByType('resource')
    .map((e) => new URL(e.name))
    .filter((u) => u.origin === location.origin)
    .map((u) => u.pathname)
    .concat('/index.html');
}

function controlled(): Promise<ServiceWorker> {
  return new Promise((resolve) => {
    const now = navigator.serviceWorker.controller;
    if (now) return resolve(now);
    navigator.serviceWorker.addEventListener('controllerchange', () => navigator.serviceWorker.controller && resolve(navigator.serviceWorker.controller), { once: true });
  });
}

/**
 * The service worker (built into dist/sw.js by vite.config.ts) keeps the app shell so the app
 * opens at once and without a network, and the offline code still works. Native builds load
 * the app from the device already, so they do not need one. The worker downloads nothing the
 * page already has: once it controls the page, the page tells it what it loaded (copied from the
 * HTTP cache), and after the page's own preloads (pagePreloadsDone) it fetches what is left.
 */
export function registerServiceWorker(): void {
  if (!import.meta.env.PROD || isNativePlatform() || !('serviceWorker' in navigator)) return;
  const register = () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).then(
      async () => {
        const worker = await controlled();
        worker.postMessage({ type: 'loaded', paths: loadedPaths() });
        await preloaded;
        worker.postMessage({ type: 'loaded', paths: loadedPaths() });
        worker.postMessage({ type: 'complete' });
      },
      (e: unknown) => {
        console.warn('qrauth: service worker not registered; the app will not open offline', e);
      },
    );
  };
  // After the first paint's downloads; the page may already be loaded when this runs.
  if (document.readyState === 'complete') register();
  else window.addEventListener('load', register, { once: true });
}

/** Called once the page's background preloads have settled: the worker may fetch the rest. */
export function pagePreloadsDone(): void {
  pagePreloaded();
}
