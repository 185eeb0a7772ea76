import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Plugin, defineConfig } from 'vite';

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

export default defineConfig({
  root: here,
  base: '/',
  plugins: [serviceWorker()],
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
