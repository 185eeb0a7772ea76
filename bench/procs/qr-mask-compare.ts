/**
 * Side by side in one process: the `qrcode` library choosing the mask itself (what the agent did
 * before) against agent/src/qr-mask.ts (the same choice, computed faster), alternating on the
 * same made-up login payloads (from the run's seed). Prints one JSON line: medians, p99s, and how
 * many symbols differed.
 *
 *   npx tsx bench/procs/qr-mask-compare.ts [payloads=3000] [seed]
 */
import QRCode from 'qrcode';
import { encodeQr } from '../../agent/src/qr-mask.js';
import { formatLoginPayload, toB64url } from '../../protocol/src/index.js';
import { prng } from '../../test/support/seeded.js';
import { seedArg } from '../lib.js';

const n = Number(process.argv[2] ?? 3000);
/** argv[3]: the seed of the run that starts this (bench/run.ts passes its own); else the bench seed (QRAUTH_TEST_SEED or the default). */
const seed = seedArg(process.argv[3], 0x0bec_5eed, 'qr-mask-compare');
const payloadBytes = prng(seed);
const id = () => toB64url(payloadBytes(16));
const payloads = Array.from({ length: n + 500 }, () => Buffer.from(formatLoginPayload({ hostId: id(), sid: id(), nonce: payloadBytes(16) })));
const lib: number[] = [];
const fast: number[] = [];
let differed = 0;
for (let i = 0; i < payloads.length; i++) {
  const p = payloads[i]!;
  const t0 = process.hrtime.bigint();
  const a = QRCode.create([{ data: p, mode: 'byte' }], { errorCorrectionLevel: 'M' });
  const t1 = process.hrtime.bigint();
  const b = encodeQr(p, 'M');
  const t2 = process.hrtime.bigint();
  if (a.maskPattern !== b.mask || !Buffer.from(a.modules.data).equals(Buffer.from(b.dark))) differed++;
  if (i >= 500) {
    // The first 500 warm up the JIT.
    lib.push(Number(t1 - t0) / 1e6);
    fast.push(Number(t2 - t1) / 1e6);
  }
}
const q = (xs: number[], f: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * f))]!;
process.stdout.write(`${JSON.stringify({ n, differed, library: { p50: q(lib, 0.5), p99: q(lib, 0.99) }, fast: { p50: q(fast, 0.5), p99: q(fast, 0.99) } })}\n`);
