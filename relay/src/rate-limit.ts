/**
 * Token buckets keyed by IP, deviceId or hostId, in a map with a hard size cap so a flood of
 * fresh keys cannot grow memory without bound.
 */

export interface TokenBucketOptions {
  /** Tokens a key may spend at once; also the refill amount per `windowMs`. */
  capacity: number;
  /** Time in which an empty bucket refills completely, in ms. */
  windowMs: number;
  /**
   * Most keys remembered. When full, the least recently used key is forgotten (its next request
   * starts with a full bucket): a bounded, slightly generous limit beats unbounded memory.
   * @default 100000
   */
  maxKeys?: number;
  /** @default Date.now */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBucketLimiter {
  readonly #capacity: number;
  readonly #perMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: TokenBucketOptions) {
    if (!(opts.capacity > 0) || !(opts.windowMs > 0)) throw new RangeError('capacity and windowMs must be positive');
    this.#capacity = opts.capacity;
    this.#perMs = opts.capacity / opts.windowMs;
    this.#maxKeys = opts.maxKeys ?? 100_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Spends one token of `key`; false when the key is over its limit. */
  take(key: string): boolean {
    const now = this.#now();
    const b = this.#buckets.get(key);
    let tokens: number;
    if (b) {
      tokens = Math.min(this.#capacity, b.tokens + (now - b.at) * this.#perMs);
      this.#buckets.delete(key); // re-inserted below: Map order is then least recently used first
    } else {
      tokens = this.#capacity;
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
    }
    const allowed = tokens >= 1;
    this.#buckets.set(key, { tokens: allowed ? tokens - 1 : tokens, at: now });
    return allowed;
  }

  get size(): number {
    return this.#buckets.size;
  }
}
