/* qrauth service worker: keeps the app shell so the app opens at once, and offline (the offline
 * code needs only the keys on the device). Built into dist/sw.js by vite.config.ts, which fills
 * in VERSION (a hash of every file) and PRECACHE (the files the web app may load; native-only
 * chunks left out). Served with Cache-Control: no-cache so a new build is picked up.
 *
 * - Opening the app: the cached index.html at once, never waiting for the network (on a network
 *   that hangs, a network-first shell waited for its timeout exactly when the offline code is
 *   needed). The browser checks sw.js in the background on every open; a new build installs
 *   a new worker, which takes over for the next open.
 * - Nothing is downloaded twice: the first install fetches nothing; the page tells the worker
 *   which files it has already loaded (sw-register.ts) and the worker copies them from the
 *   browser's HTTP cache (hashed files are immutable there), then fetches only what the page
 *   never loaded. Files the page fetches through the worker are kept as they pass. An update
 *   copies unchanged hashed files from the previous version's cache.
 */
/* global self, caches, fetch, Response, URL */
const VERSION = '__VERSION__';
const PRECACHE = __PRECACHE__;
const CACHE = `qrauth-shell-${VERSION}`;
const SHELL = '/index.html';
const wanted = new Set(PRECACHE);
/** url → the fetch now storing it, so two callers never download one file twice */
const storing = new Map();

const isHashedAsset = (path) => path.startsWith('/assets/');

/** Fetches `path` (from the HTTP cache when it is there and fresh) and keeps it; once per file. */
function store(cache, path, init) {
  if (storing.has(path)) return storing.get(path);
  const done = cache
    .match(path)
    .then((hit) => hit || fetch(path, init).then((r) => (r.ok && r.type === 'basic' ? cache.put(path, r.clone()).then(() => r) : r)))
    .finally(() => storing.delete(path));
  storing.set(path, done);
  return done;
}

async function previousCaches() {
  return (await caches.keys()).filter((k) => k.startsWith('qrauth-shell-') && k !== CACHE);
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const old = await previousCaches();
      // First install: the page is loading these files right now; it hands them over instead.
      if (old.length > 0) {
        const cache = await caches.open(CACHE);
        await Promise.all(
          PRECACHE.map(async (path) => {
            const unchanged = isHashedAsset(path) ? await caches.match(path) : undefined;
            if (unchanged) await cache.put(path, unchanged);
            else await store(cache, path, { cache: 'no-cache' });
          }),
        );
      }
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    previousCaches()
      .then((old) => Promise.all(old.map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

/**
 * From the page: `{ type: 'loaded', paths }` (what it fetched before this worker controlled it)
 * and `{ type: 'complete' }` once its own preloads are done, when the rest may be fetched.
 * index.html is kept last, only once every other file is: a cached shell is what opens the app
 * offline, so it must never stand in a cache that lacks a chunk (Approve, for the offline code).
 */
self.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== 'object') return;
  const paths = msg.type === 'loaded' && Array.isArray(msg.paths) ? msg.paths.filter((p) => typeof p === 'string' && wanted.has(p)) : msg.type === 'complete' ? PRECACHE : null;
  if (!paths) return;
  const files = paths.filter((p) => p !== SHELL);
  event.waitUntil(
    caches.open(CACHE).then((cache) =>
      Promise.all(files.map((p) => store(cache, p).then(() => true, () => false))).then(async (kept) => {
        if (msg.type !== 'complete') return;
        if (kept.every(Boolean)) await store(cache, SHELL).catch(() => undefined);
        if (event.source) event.source.postMessage({ type: 'cached', version: VERSION });
      }),
    ),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  // Only our own shell: never a relay's Socket.IO, health or metrics endpoints.
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate') {
    event.respondWith(
      caches.open(CACHE).then(async (cache) => (await cache.match(SHELL)) || fetch(request)),
    );
    return;
  }
  if (!wanted.has(url.pathname)) return;
  event.respondWith(caches.open(CACHE).then((cache) => store(cache, url.pathname)));
});
