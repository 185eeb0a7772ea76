#!/usr/bin/env node
/**
 * The node_modules paths the given workspaces need at run time, one per line, from
 * package-lock.json: dependencies, optionalDependencies that are installed, and peer dependencies
 * that are not optional, followed transitively with Node's lookup (nested node_modules first).
 * `npm ls --omit=dev` also follows an optional peer that happens to be installed for another
 * reason (valibot's typescript, a dev tool of ours), which would ship the compiler in the packages.
 *
 *   node scripts/prod-modules.mjs agent relay protocol
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { packages } = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
const workspaces = process.argv.slice(2);
if (workspaces.length === 0) {
  console.error('usage: prod-modules.mjs <workspace dir>...');
  process.exit(64);
}

/** Where Node finds `name` from the package at `from` (a lock key), following workspace links. */
function resolve(from, name) {
  for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
    const key = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
    if (packages[key]) return packages[key].link ? packages[key].resolved : key;
    if (!dir) return null;
  }
}

const seen = new Set();
const todo = [];
for (const w of workspaces) {
  if (!packages[w]) {
    console.error(`prod-modules.mjs: no workspace ${w} in package-lock.json`);
    process.exit(65);
  }
  todo.push(w);
}
while (todo.length) {
  const at = todo.pop();
  const p = packages[at];
  const optionalPeers = p.peerDependenciesMeta ?? {};
  const wanted = [
    ...Object.keys(p.dependencies ?? {}).map((n) => [n, true]),
    ...Object.keys(p.optionalDependencies ?? {}).map((n) => [n, false]),
    ...Object.keys(p.peerDependencies ?? {}).filter((n) => !optionalPeers[n]?.optional).map((n) => [n, true]),
  ];
  for (const [name, required] of wanted) {
    const key = resolve(at, name);
    if (!key) {
      if (required) {
        console.error(`prod-modules.mjs: ${name} (needed by ${at || 'the root'}) is not installed: run npm ci`);
        process.exit(66);
      }
      continue;
    }
    if (seen.has(key)) continue;
    seen.add(key);
    todo.push(key);
  }
}
const out = [...seen].filter((k) => k.startsWith('node_modules/') && !k.startsWith('node_modules/@qrauth/')).sort();
process.stdout.write(out.length ? `${out.join('\n')}\n` : '');
