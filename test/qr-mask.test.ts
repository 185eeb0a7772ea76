/**
 * agent/src/qr-mask.ts picks the QR mask faster than the `qrcode` package does; it must pick
 * the same one and give the very same symbol, for every version and level we use.
 */
import test from 'ava';
import QRCode from 'qrcode';
import { encodeQr } from '../agent/src/qr-mask.js';
import { renderQr } from '../agent/src/qr-render.js';
import { formatLoginPayload, toB64url } from '../protocol/src/index.js';
import { decodeTerminalQr } from './support/qr-decode.js';
import { prng, testSeed } from './support/seeded.js';

// Inputs come from a fixed seed (QRAUTH_TEST_SEED overrides); every failure message names it.
const SEED = testSeed(20261130);

function librarySymbol(data: Buffer, ecc: 'L' | 'M') {
  return QRCode.create([{ data, mode: 'byte' }], { errorCorrectionLevel: ecc });
}

test('the same symbol and mask as QRCode.create for 1,200 random inputs of 1-180 bytes at L and M', (t) => {
  const masksSeen = new Set<number>();
  const versionsSeen = new Set<number>();
  let compared = 0;
  const randomBytes = prng(SEED);
  for (let i = 0; i < 600; i++) {
    // Random bytes, and base64url text like our payloads (their bits are far from uniform).
    const len = 1 + (i % 180);
    const data = i % 2 ? randomBytes(len) : Buffer.from(toB64url(randomBytes(len)).slice(0, len));
    for (const ecc of ['L', 'M'] as const) {
      const lib = librarySymbol(data, ecc);
      const fast = encodeQr(data, ecc);
      t.is(fast.version, lib.version);
      t.is(fast.mask, lib.maskPattern as number, `mask for input ${i} at ${ecc} (seed ${SEED})`);
      t.is(fast.size, lib.modules.size);
      t.deepEqual(Buffer.from(fast.dark), Buffer.from(lib.modules.data), `modules for input ${i} at ${ecc} (seed ${SEED})`);
      masksSeen.add(fast.mask);
      versionsSeen.add(fast.version);
      compared++;
    }
  }
  t.is(compared, 1200);
  // The comparison covered every mask and a spread of versions, not one lucky case.
  t.is(masksSeen.size, 8);
  t.true(versionsSeen.size >= 8, `versions seen: ${[...versionsSeen].join(',')}`);
});

test('a rendered login QR decodes back to its payload', (t) => {
  const randomBytes = prng(SEED ^ 0x5eed);
  for (let i = 0; i < 20; i++) {
    const payload = formatLoginPayload({ hostId: toB64url(randomBytes(16)), sid: toB64url(randomBytes(16)), nonce: randomBytes(16) });
    for (const style of ['utf8', 'ascii'] as const) {
      const qr = renderQr(payload, style);
      t.is(qr.version, 5);
      for (const theme of ['dark', 'light'] as const) t.is(decodeTerminalQr(qr.text, theme), payload, `${style} on ${theme}, payload ${payload} (seed ${SEED})`);
    }
  }
});
