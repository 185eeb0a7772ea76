/**
 * The QR library's own mask choice, computed faster. ISO/IEC 18004 has the encoder score all
 * eight mask patterns (penalty rules N1-N4) and keep the lowest; the `qrcode` package does that
 * on its BitMatrix one module at a time, applying and undoing each mask, which is ~90% of the
 * time it takes to make a login QR (docs/BENCHMARKS.md, benchmark 1).
 *
 * Here the library encodes once with mask 0, and each other candidate is that matrix XOR a
 * precomputed difference (mask 0 ⊕ mask p over the data region, format bits 0 ⊕ p over the format
 * region), which depends only on the version and error correction level and is itself taken from
 * the library. The penalties are the library's rules, written over a flat byte array. The result
 * is the very symbol `QRCode.create` would give (test/qr-mask.test.ts checks that on random
 * inputs, and `make bench` on thousands more), about 2.5× faster. The cache of differences holds at
 * most one entry per version and level (80).
 */
import QRCode, { type QRCodeMaskPattern } from 'qrcode';

export type EccLevel = 'L' | 'M';

export interface QrMatrix {
  /** Modules per side (no quiet zone). */
  size: number;
  /** Row-major, 1 = dark. */
  dark: Uint8Array;
  version: number;
  mask: number;
}

/** Bytes of a module array rounded up to whole 32-bit words, so masks are XORed 4 modules at a time. */
const padded = (modules: number): number => (modules + 3) & ~3;

// (version, ecc) → for each mask p, the XOR that turns the mask-0 symbol into mask p's.
const diffs = new Map<string, Int32Array[]>();

function maskDiffs(version: number, ecc: EccLevel): Int32Array[] {
  const key = `${version}${ecc}`;
  let d = diffs.get(key);
  if (!d) {
    // Any data of this version gives the same differences: data bits cancel out.
    const make = (mask: QRCodeMaskPattern) => QRCode.create([{ data: Buffer.alloc(1), mode: 'byte' }], { version, errorCorrectionLevel: ecc, maskPattern: mask }).modules.data;
    const base = make(0);
    d = [];
    for (let p = 0; p < 8; p++) {
      const other = make(p as QRCodeMaskPattern);
      const x = new Uint8Array(padded(base.length));
      for (let i = 0; i < base.length; i++) x[i] = base[i]! ^ other[i]!;
      d.push(new Int32Array(x.buffer));
    }
    diffs.set(key, d);
  }
  return d;
}

// The penalties are written without data-dependent branches (runs and blocks are counted with
// arithmetic): on random-looking modules a branch per module mispredicts half the time, which
// cost more than the counting itself.

/** N1 (runs of ≥ 5) and N3 (1:1:3:1:1 with 4 light) along rows and columns, as the library counts them. */
function penaltyLines(m: Uint8Array, n: number): number {
  let points = 0;
  for (let a = 0; a < n; a++) {
    let r = m[a * n]!;
    let c = m[a]!;
    let runR = 1;
    let runC = 1;
    let bitsR = r;
    let bitsC = c;
    for (let b = 1; b < n; b++) {
      const r2 = m[a * n + b]!; // along row a
      const c2 = m[b * n + a]!; // down column a
      // A run of k ≥ 5 scores 3 + (k - 5): 3 when it reaches 5, then 1 for each module more.
      runR = runR * (1 - (r ^ r2)) + 1;
      runC = runC * (1 - (c ^ c2)) + 1;
      if (runR >= 5) points += runR === 5 ? 3 : 1;
      if (runC >= 5) points += runC === 5 ? 3 : 1;
      r = r2;
      c = c2;
      bitsR = ((bitsR << 1) & 0x7ff) | r;
      bitsC = ((bitsC << 1) & 0x7ff) | c;
      if (b >= 10) {
        if (bitsR === 0x5d0 || bitsR === 0x05d) points += 40;
        if (bitsC === 0x5d0 || bitsC === 0x05d) points += 40;
      }
    }
  }
  return points;
}

/** N2 (2×2 blocks of one colour) and N4 (dark proportion away from 50%). */
function penaltyBlocks(m: Uint8Array, n: number): number {
  let blocks = 0;
  let dark = 0;
  for (let i = 0; i < n * n; i++) dark += m[i]!;
  for (let r = 0; r < n - 1; r++) {
    const top = r * n;
    const bottom = top + n;
    for (let c = 0; c < n - 1; c++) {
      const s = m[top + c]! + m[top + c + 1]! + m[bottom + c]! + m[bottom + c + 1]!;
      // One colour when s is 0 or 4, that is when s & 3 is 0.
      blocks += 1 - (((s & 3) + 3) >> 2);
    }
  }
  const k = Math.abs(Math.ceil((dark * 100) / (n * n) / 5) - 10);
  return blocks * 3 + k * 10;
}

/** One byte-mode segment at the given level, with the mask the standard's penalty rules pick. */
export function encodeQr(data: Uint8Array, ecc: EccLevel): QrMatrix {
  const sym = QRCode.create([{ data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), mode: 'byte' }], { errorCorrectionLevel: ecc, maskPattern: 0 });
  const n = sym.modules.size;
  const bytes = padded(n * n);
  const m0 = new Uint8Array(bytes);
  m0.set(sym.modules.data);
  const w0 = new Int32Array(m0.buffer);
  const d = maskDiffs(sym.version, ecc);
  let best = m0;
  let bestMask = 0;
  let bestPenalty = penaltyLines(m0, n) + penaltyBlocks(m0, n);
  let cand = new Uint8Array(bytes);
  for (let p = 1; p < 8; p++) {
    const x = d[p]!;
    const w = new Int32Array(cand.buffer);
    for (let i = 0; i < w.length; i++) w[i] = w0[i]! ^ x[i]!;
    const penalty = penaltyLines(cand, n) + penaltyBlocks(cand, n);
    if (penalty < bestPenalty) {
      bestPenalty = penalty;
      bestMask = p;
      // Keep this candidate; the next one goes into the buffer it replaces (never mask 0's).
      const old = best;
      best = cand;
      cand = old === m0 ? new Uint8Array(bytes) : old;
    }
  }
  return { size: n, dark: best.subarray(0, n * n), version: sym.version, mask: bestMask };
}
