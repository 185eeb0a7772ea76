/**
 * Deterministic random inputs for tests: every "random" test input comes from a seed the test
 * prints, so a failure can be replayed (QRAUTH_TEST_SEED=<n> npx ava test/<file>).
 */

/** The seed for this run: QRAUTH_TEST_SEED when set, else the test's fixed default. */
export function testSeed(fallback: number): number {
  const env = process.env.QRAUTH_TEST_SEED;
  if (env !== undefined && /^\d{1,10}$/.test(env)) return Number(env) >>> 0;
  return fallback >>> 0;
}

/** Deterministic bytes (xorshift32). */
export function prng(seed32: number): (n: number) => Buffer {
  let x = seed32 >>> 0 || 1;
  return (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  };
}
