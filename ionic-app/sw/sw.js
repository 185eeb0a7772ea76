/* qrauth service worker: caches the app shell so the app opens offline (the offline code needs
 * only the keys on the device). Built into dist/sw.js by vite.config.ts, which fills in
 * VERSION and PRECACHE. Served with Cache-Control: no-cache so a new build is picked up. */
/* global self, caches, fetch */
const VERSION = '__VERSION__';
const PRECACHE = __PRECACHE__;
const CACHE = `qrauth-shell-${VERSION}`;
const NAV_TIMEOUT_MS = 4000;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(PRECACHE.map((p) => new Request(p, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('qrauth-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function networkWithTimeout(request) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout')), NAV_TIMEOUT_MS);
    fetch(request).then(
      (r) => {
        clearTimeout(timer);
        resolve(r);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  // Only our own shell: never the relay's Socket.IO, health or metrics endpoints.
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith('/socket.io/') || url.pathname === '/healthz' || url.pathname === '/metrics') return;

  if (request.mode === 'navigate') {
    // Network first so a new build shows at once; the cached shell when offline.
    event.respondWith(
      networkWithTimeout(request).then(
        (r) => (r.ok ? r : caches.match('/index.html').then((c) => c || r)),
        () => caches.match('/index.html').then((c) => c || Response.error()),
      ),
    );
    return;
  }
  // Hashed assets and icons never change under one name: cache first.
  event.respondWith(caches.match(request).then((cached) => cached || fetch(request)));
});
