import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as zlibConstants, brotliCompressSync, gzipSync } from 'node:zlib';
import { type Plugin, defineConfig } from 'vite';
import { isLoopbackHostname, relayUrlProblem } from '../protocol/src/relay-url.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p, base) : [path.relative(base, p).split(path.sep).join('/')];
  });
}

/** Chunks only a native build loads (the scanner and keystore plugins): the web app never needs them offline. */
const NATIVE_ONLY = /node_modules\/(@capacitor\/barcode-scanner|@aparajita\/capacitor-secure-storage|html5-qrcode)\//;
/** Text files worth precompressing (the rest, PNG icons, already are). */
const COMPRESSIBLE = /\.(js|mjs|css|html|svg|json|webmanifest|txt)$/;

/**
 * Writes dist/sw.js from sw/sw.js with the list of files the app needs offline and a version
 * derived from their contents, so each build installs a fresh cache; then writes a .gz and .br
 * beside every text file so a static server sends them compressed without compressing per
 * request (nginx gzip_static / brotli_static, relay/src/static.ts).
 */
function serviceWorker(): Plugin {
  let outDir = '';
  const nativeOnly = new Set<string>();
  return {
    name: 'qrauth-service-worker',
    apply: 'build',
    configResolved(cfg) {
      outDir = path.resolve(cfg.root, cfg.build.outDir);
    },
    generateBundle(_options, bundle) {
      for (const [file, out] of Object.entries(bundle)) {
        if (out.type === 'chunk' && out.moduleIds.length > 0 && out.moduleIds.every((id) => NATIVE_ONLY.test(id) || id.startsWith('\0'))) nativeOnly.add(file);
      }
    },
    closeBundle() {
      const files = filesUnder(outDir)
        .filter((f) => f !== 'sw.js' && !/\.(map|gz|br)$/.test(f) && !nativeOnly.has(f))
        .sort();
      const hash = createHash('sha256');
      for (const f of files) hash.update(f).update(readFileSync(path.join(outDir, f)));
      const version = hash.digest('hex').slice(0, 16);
      const precache = files.map((f) => `/${f}`);
      const template = readFileSync(path.join(here, 'sw', 'sw.js'), 'utf8');
      writeFileSync(
        path.join(outDir, 'sw.js'),
        template.replace("'__VERSION__'", JSON.stringify(version)).replace('__PRECACHE__', JSON.stringify(precache)),
      );
      for (const f of filesUnder(outDir)) {
        if (!COMPRESSIBLE.test(f)) continue;
        const body = readFileSync(path.join(outDir, f));
        const gz = gzipSync(body, { level: 9 });
        const br = brotliCompressSync(body, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 11, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: body.length } });
        if (gz.length < body.length) writeFileSync(path.join(outDir, `${f}.gz`), gz);
        if (br.length < body.length) writeFileSync(path.join(outDir, `${f}.br`), br);
      }
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

const sri = (body: Buffer | string): string => `sha384-${createHash('sha384').update(body).digest('base64')}`;

/**
 * Puts the CSP first in <head> and Subresource Integrity (sha384) on everything the app loads,
 * so a cache or CDN between the web server and the phone cannot swap a file: an integrity
 * attribute on each script and style index.html loads, and an import map whose "integrity"
 * lists every JavaScript chunk, which covers the chunks loaded later by import() (lazy pages,
 * the QR decoder) that no attribute can reach. The import map is inline, so the CSP allows it by
 * its sha256 and nothing else inline. Browsers without import-map integrity (Chromium < 127,
 * Safari < 18, Firefox < 138) still load those chunks under script-src 'self' (docs/app.md).
 * All CSS is one file (cssCodeSplit off) so it too has its attribute.
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
      // The QR decoder downloads beside the start bundle, not after the person taps Scan: one
      // round trip less before the camera can read (start.ts). Its integrity comes below.
      const decoder = filesUnder(path.join(outDir, 'assets')).filter((f) => /^qr-decoder-[\w-]+\.js$/.test(f));
      if (decoder.length !== 1) throw new Error(`dist/assets: expected one qr-decoder chunk, found ${decoder.length}`);
      const withPreload = readFileSync(index, 'utf8').replace(
        /(\n\s*)(<script type="module")/,
        `$1<link rel="modulepreload" crossorigin href="/assets/${decoder[0]}">$1$2`,
      );
      if (!withPreload.includes('rel="modulepreload"')) throw new Error('index.html: no module script to put the decoder preload before');
      let html = withPreload.replace(
        /<(script|link)\b([^>]*?)\s(src|href)="\/([^"]+)"([^>]*)>/g,
        (tag, name: string, before: string, attr: string, file: string, after: string) => {
          if (name === 'link' && !/rel="(stylesheet|modulepreload)"/.test(tag)) return tag;
          return `<${name}${before} ${attr}="/${file}" integrity="${sri(readFileSync(path.join(outDir, file)))}"${after}>`;
        },
      );
      const integrity: Record<string, string> = {};
      for (const f of filesUnder(path.join(outDir, 'assets')).filter((f) => f.endsWith('.js')).sort()) {
        integrity[`/assets/${f}`] = sri(readFileSync(path.join(outDir, 'assets', f)));
      }
      const importMap = JSON.stringify({ imports: {}, integrity });
      const importMapHash = `'sha256-${createHash('sha256').update(importMap).digest('base64')}'`;
      const cspTag = /<meta http-equiv="Content-Security-Policy" content="[^"]*" \/>/;
      const csp = cspTag.exec(html)?.[0];
      if (!csp || !csp.includes("script-src 'self';")) throw new Error('index.html: the CSP meta is missing');
      // Right after the CSP (which must precede what it governs), before any module script.
      html = html.replace(cspTag, `${csp.replace("script-src 'self';", `script-src 'self' ${importMapHash};`)}\n    <script type="importmap">${importMap}</script>`);
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
    // One stylesheet, linked from index.html with its integrity (a lazy chunk's CSS would be
    // inserted by Vite's loader without one). Ionic's component styles live in their JS.
    cssCodeSplit: false,
    rollupOptions: {
      treeshake: {
        // Ionic's component modules (@ionic/core/components/ion-*.js) only define a class until
        // their defineCustomElement() is called, but the package declares no "sideEffects", so
        // without this every component (1.2 MB) is bundled although the app uses about twenty.
        moduleSideEffects: (id) => !/\/@ionic\/core\/components\/ion-[a-z-]+\.js$/.test(id),
      },
    },
  },
});
