/**
 * The browser crypto (protocol/src/crypto-web.ts, noble) against the checked-in vectors, in Node
 * and in real Chromium, and against the Node crypto (sodium-native) on random keys: the phone
 * and the agent must agree on every byte.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { webCrypto } from '../protocol/src/crypto-web.js';
import { nodeCrypto } from '../protocol/src/crypto-node.js';
import { QrauthError, offlineKey, keyId, toB64url } from '../protocol/src/index.js';
import { type ProtocolVectors, type VectorCheck, runProtocolVectors } from '../ionic-app/src/data/self-test.js';
import { CHROMIUM_PATH } from './support/browser.js';
import { ROOT } from './support/system.js';
import { chromium } from 'playwright-core';

const vectors = JSON.parse(readFileSync(new URL('../protocol/vectors.json', import.meta.url), 'utf8')) as ProtocolVectors;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function assertAll(t: import('ava').ExecutionContext, checks: VectorCheck[]) {
  // Every vector field is covered: if vectors.json grows, this count must be revisited.
  t.is(checks.length, 47);
  for (const c of checks) t.is(c.got, c.want, c.name);
}

test('noble crypto reproduces every protocol vector in Node', (t) => {
  assertAll(t, runProtocolVectors(webCrypto, vectors));
});

test('the vector runner itself agrees with the Node (sodium) crypto', (t) => {
  assertAll(t, runProtocolVectors(nodeCrypto, vectors));
});

test('noble and sodium agree on random keys: public keys, signatures both ways, shared secrets', (t) => {
  for (let i = 0; i < 40; i++) {
    const a = nodeCrypto.randomBytes(32);
    const b = webCrypto.randomBytes(32);
    const pubA = webCrypto.ed25519FromSeed(a).publicKey;
    const pubB = nodeCrypto.ed25519FromSeed(b).publicKey;
    t.is(hex(pubA), hex(nodeCrypto.ed25519FromSeed(a).publicKey));
    const msg = webCrypto.randomBytes(1 + i * 7);
    const sigWeb = webCrypto.ed25519Sign(a, msg);
    t.is(hex(sigWeb), hex(nodeCrypto.ed25519Sign(a, msg)), 'Ed25519 is deterministic: same signature');
    t.true(nodeCrypto.ed25519Verify(pubA, msg, sigWeb));
    t.true(webCrypto.ed25519Verify(pubB, msg, nodeCrypto.ed25519Sign(b, msg)));
    t.is(hex(webCrypto.ed25519SharedSecret(a, pubB)), hex(nodeCrypto.ed25519SharedSecret(a, pubB)));
    const hostId = keyId(webCrypto, pubA);
    const deviceId = keyId(webCrypto, pubB);
    t.is(hex(offlineKey(webCrypto, b, pubA, hostId, deviceId)), hex(offlineKey(nodeCrypto, a, pubB, hostId, deviceId)));
  }
});

test('noble verification is as strict as sodium: a malleated signature (S + L) is refused by both', (t) => {
  const seed = new Uint8Array(32).fill(9);
  const pub = webCrypto.ed25519FromSeed(seed).publicKey;
  const msg = new TextEncoder().encode('qrauth');
  const sig = webCrypto.ed25519Sign(seed, msg);
  // S lives in bytes 32..63, little-endian; add the group order L.
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
  s += L;
  const bad = new Uint8Array(sig);
  for (let i = 32; i < 64; i++) {
    bad[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  t.false(nodeCrypto.ed25519Verify(pub, msg, bad));
  t.false(webCrypto.ed25519Verify(pub, msg, bad));
  t.false(webCrypto.ed25519Verify(pub.subarray(0, 31), msg, sig), 'wrong-length key: false, no throw');
});

test('a low-order peer key is refused for the offline key, as with sodium', (t) => {
  const lowOrder = new Uint8Array(32); // the identity point's encoding is 0x01 then zeros
  lowOrder[0] = 1;
  const seed = new Uint8Array(32).fill(3);
  t.throws(() => nodeCrypto.ed25519SharedSecret(seed, lowOrder), { instanceOf: QrauthError });
  const e = t.throws(() => webCrypto.ed25519SharedSecret(seed, lowOrder), { instanceOf: QrauthError });
  t.is(e?.code, 'QRA_ERR_INVALID_INPUT');
  t.throws(() => webCrypto.ed25519Sign(new Uint8Array(31), new Uint8Array(1)), { instanceOf: QrauthError });
});

test('randomBytes gives fresh bytes of the asked length, beyond the 64 KiB getRandomValues limit', (t) => {
  t.is(webCrypto.randomBytes(70_000).length, 70_000);
  t.not(toB64url(webCrypto.randomBytes(16)), toB64url(webCrypto.randomBytes(16)));
});

test('noble crypto reproduces every protocol vector in Chromium (browser bundle)', async (t) => {
  // The same sources the app bundles, built for the browser (no Node built-ins available).
  const bundle = await build({
    stdin: {
      contents: [
        `import { runProtocolVectors } from ${JSON.stringify(join(ROOT, 'ionic-app/src/data/self-test.ts'))};`,
        `import { webCrypto } from ${JSON.stringify(join(ROOT, 'protocol/src/crypto-web.ts'))};`,
        'globalThis.qrauthVectors = (v) => runProtocolVectors(webCrypto, v);',
      ].join('\n'),
      resolveDir: ROOT,
      loader: 'ts',
    },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    write: false,
    logLevel: 'silent',
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--headless=new', '--no-sandbox', '--disable-gpu'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.setContent('<!doctype html><title>vectors</title>');
  await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
  const checks = await page.evaluate((v) => (globalThis as unknown as { qrauthVectors(v: unknown): VectorCheck[] }).qrauthVectors(v), vectors);
  assertAll(t, checks);
  t.true(await page.evaluate(() => typeof (globalThis as { process?: unknown }).process === 'undefined'), 'ran without Node globals');
});
