/**
 * Serves a web build (the relay only with --serve-app-trusting-relay; tests as a plain static
 * server for the app's own origin). Only regular files whose real path stays inside the root are
 * served (no `..`, no symlink escapes); a path without a file extension that matches no file
 * gets index.html so the app's client-side routes work after a reload.
 */
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { QrauthError } from '../../protocol/src/index.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.wasm': 'application/wasm',
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

const gzipAsync = promisify(gzip);
const COMPRESSIBLE = /^(text\/|application\/(json|manifest\+json|javascript)|image\/svg\+xml)/;
/** Files compressed on the fly are kept (by path, size and mtime) up to this many bytes in all. */
const GZIP_CACHE_BYTES = 32 * 1024 * 1024;

/** The encodings of an Accept-Encoding header the client takes (q > 0). */
export function acceptedEncodings(header: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const part of (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (name && !(q && Number(q.slice(2)) === 0)) out.add(name);
  }
  return out;
}

export type StaticHandler = (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<boolean>;

/** Returns a handler that answers GET/HEAD for files under `dir`; resolves false when nothing matched. */
export async function createStaticHandler(dir: string): Promise<StaticHandler> {
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
  } catch (cause) {
    throw new QrauthError('QRA_ERR_CONFIG', `cannot serve the app from ${dir}: ${(cause as Error).message}`, { cause });
  }

  async function regularFileInside(rel: string): Promise<{ file: string; size: number; mtimeMs: number } | null> {
    const candidate = path.resolve(root, `.${path.posix.sep}${rel}`);
    try {
      const real = await realpath(candidate);
      if (real !== root && !real.startsWith(root + path.sep)) return null;
      const st = await stat(real);
      if (st.isDirectory()) return regularFileInside(path.posix.join(rel, 'index.html'));
      return st.isFile() ? { file: real, size: st.size, mtimeMs: st.mtimeMs } : null;
    } catch {
      return null;
    }
  }

  const gzipped = new Map<string, Buffer>();
  let gzippedBytes = 0;

  /**
   * The body to send for `file` given the client's Accept-Encoding: the build's precompressed
   * .br or .gz beside it (vite.config.ts writes them), else gzip made here once and kept, else
   * the file itself. Compressing the app cuts its first load by about 70 %.
   */
  async function representation(file: string, size: number, mtimeMs: number, accepted: Set<string>): Promise<{ file?: string; body?: Buffer; size: number; encoding?: string }> {
    for (const [encoding, ext] of [['br', '.br'], ['gzip', '.gz']] as const) {
      if (!accepted.has(encoding)) continue;
      const sibling = await regularFileInside(path.relative(root, file + ext).split(path.sep).join('/'));
      if (sibling) return { file: sibling.file, size: sibling.size, encoding };
    }
    if (!accepted.has('gzip') || size < 512) return { file, size };
    const key = `${file}\0${size}\0${mtimeMs}`;
    let body = gzipped.get(key);
    if (!body) {
      body = await gzipAsync(await readFile(file), { level: 9 });
      if (gzippedBytes + body.length <= GZIP_CACHE_BYTES) {
        gzipped.set(key, body);
        gzippedBytes += body.length;
      }
    }
    return { body, size: body.length, encoding: 'gzip' };
  }

  return async (req, res, pathname) => {
    let rel: string;
    try {
      rel = decodeURIComponent(pathname);
    } catch {
      return false;
    }
    if (rel.includes('\0') || rel.includes('\\') || rel.split('/').includes('..')) return false;
    let found = await regularFileInside(rel);
    if (!found && path.posix.extname(rel) === '') found = await regularFileInside('index.html');
    if (!found) return false;
    const isHtml = found.file.endsWith('.html');
    const relFile = path.relative(root, found.file).split(path.sep).join('/');
    // Vite's hashed assets never change under their name: cache for a year. index.html and the
    // service worker must be revalidated so a new build reaches installed apps; the rest, an hour.
    const cacheControl =
      isHtml || relFile === 'sw.js' ? 'no-cache' : relFile.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'public, max-age=3600';
    const contentType = contentTypeOf(found.file);
    const compressible = COMPRESSIBLE.test(contentType);
    const sent = compressible ? await representation(found.file, found.size, found.mtimeMs, acceptedEncodings(req.headers['accept-encoding'])) : { file: found.file, size: found.size };
    res.writeHead(200, {
      'content-type': contentType,
      'content-length': String(sent.size),
      'x-content-type-options': 'nosniff',
      'cache-control': cacheControl,
      // A cache between here and the browser must not give the gzip body to a client without gzip.
      ...(compressible ? { vary: 'Accept-Encoding' } : {}),
      ...(sent.encoding ? { 'content-encoding': sent.encoding } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    if (sent.body) {
      res.end(sent.body);
      return true;
    }
    const stream = createReadStream(sent.file!);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
    return true;
  };
}
