import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Plugin, defineConfig } from 'vite';
import { isLoopbackHostname, relayUrlProblem } from '../protocol/src/relay-url.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p, base) : [path.relative(base, p).split(path.sep).join('/')];
  });
}

/**
 * Writes dist/sw.js from sw/sw.js with the list of files to precache (the whole app shell)
 * and a version derived from their contents, so each build installs a fresh cache.
 */
function serviceWorker(): Plugin {
  let outDir = '';
  return {
    name: 'qrauth-service-worker',
    apply: 'build',
    configResolved(cfg) {
      outDir = path.resolve(cfg.root, cfg.build.outDir);
    },
    closeBundle() {
      const files = filesUnder(outDir).filter((f) => f !== 'sw.js' && !f.endsWith('.map')).sort();
      const hash = createHash('sha256');
      for (const f of files) hash.update(f).update(readFileSync(path.join(outDir, f)));
      const version = hash.digest('hex').slice(0, 16);
      const precache = files.map((f) => `/${f}`);
      const template = readFileSync(path.join(here, 'sw', 'sw.js'), 'utf8');
      writeFileSync(
        path.join(outDir, 'sw.js'),
        template.replace("'__VERSION__'", JSON.stringify(version)).replace('__PRECACHE__', JSON.stringify(precache)),
      );
    },
  };
}

/**
 * connect-src of the app's Content-Security-Policy: the relays it may talk to, from QRAUTH_RELAYS
 * (space- or comma-separated https URLs, fixed at build time); unset, relays on this machine
 * only (dev, tests, `make demo`). A relay missing here is refused by the browser itself.
 */
function relaySources(list = process.env.QRAUTH_RELAYS): string[] {
  if (!list?.trim()) {
    return ['127.0.0.1', 'localhost', '[::1]'].flatMap((h) => [`http://${h}:*`, `ws://${h}:*`]);
  }
  return list
    .split(/[\s,]+/)
    .filter(Boolean)
    .flatMap((relay) => {
      const problem = relayUrlProblem(relay);
      if (problem) throw new Error(`QRAUTH_RELAYS: ${problem}`);
      const { protocol, host, hostname } = new URL(relay);
      const ws = protocol === 'https:' ? 'wss:' : isLoopbackHostname(hostname) ? 'ws:' : 'wss:';
      return [`${protocol}//${host}`, `${ws}//${host}`];
    });
}

/**
 * The app's whole policy, as a <meta> so any static web server serves it unchanged: scripts only
 * from the app's own files (no inline script, no eval), network only to the relays. Styles allow
 * 'unsafe-inline' because Ionic's components insert their styles at run time; a style cannot run
 * script. frame-ancestors cannot be set in a <meta>: docs/app.md sends it as a header.
 */
export function contentSecurityPolicy(relays: string[] = relaySources()): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    "media-src 'self' blob: mediastream:",
    "manifest-src 'self'",
    "worker-src 'self'",
    `connect-src ${relays.join(' ')}`,
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
  ].join('; ');
}

/**
 * Puts the CSP first in <head> and Subresource Integrity (sha384) on every script and style
 * index.html loads, so a cache or CDN between the web server and the phone cannot swap them.
 * A few lines of our own: the SRI plugins on npm do the same for index.html and no more, and
 * chunks loaded later by import() are covered by script-src 'self' (see docs/app.md).
 */
function securityHeaders(): Plugin {
  let outDir = '';
  return {
    name: 'qrauth-csp-sri',
    apply: 'build',
    configResolved(cfg) {
      outDir = path.resolve(cfg.root, cfg.build.outDir);
    },
    transformIndexHtml(html) {
      const withCsp = html.replace('<meta charset="utf-8" />', `<meta charset="utf-8" />\n    <meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy()}" />`);
      if (withCsp === html) throw new Error('index.html: no <meta charset="utf-8" /> to put the CSP after');
      return withCsp;
    },
    // From the files as written (minified, preload paths filled in): the bytes the browser checks.
    // Synchronous, so it is done before serviceWorker() hashes index.html for its cache version.
    writeBundle() {
      const index = path.join(outDir, 'index.html');
      const html = readFileSync(index, 'utf8').replace(
        /<(script|link)\b([^>]*?)\s(src|href)="\/([^"]+)"([^>]*)>/g,
        (tag, name: string, before: string, attr: string, file: string, after: string) => {
          if (name === 'link' && !/rel="(stylesheet|modulepreload)"/.test(tag)) return tag;
          const integrity = `sha384-${createHash('sha384').update(readFileSync(path.join(outDir, file))).digest('base64')}`;
          return `<${name}${before} ${attr}="/${file}" integrity="${integrity}"${after}>`;
        },
      );
      writeFileSync(index, html);
    },
  };
}

export default defineConfig({
  root: here,
  base: '/',
  plugins: [securityHeaders(), serviceWorker()],
  esbuild: { jsx: 'automatic' },
  resolve: {
    // npm may nest a second copy of @ionic/react (and core) under @ionic/react-router in this
    // workspace; two copies would double the bundle and split Ionic's React contexts.
    dedupe: ['@ionic/react', '@ionic/core', 'ionicons', 'react', 'react-dom', 'react-router', 'react-router-dom'],
  },
  server: {
    // The app imports the shared protocol code from ../protocol/src.
    fs: { allow: [path.resolve(here, '..')] },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 900,
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes('node_modules/@ionic') || id.includes('node_modules/ionicons') || id.includes('node_modules/@stencil')) return 'ionic';
          return undefined;
        },
      },
    },
  },
});
