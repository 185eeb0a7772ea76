/**
 * Handshake nonces seen recently, so a captured handshake cannot be replayed while its time is
 * still inside the clock window. Bounded: when full of live nonces it refuses new handshakes
 * (fail closed) rather than forget a nonce that could still be replayed.
 */
import { QrauthError } from '../../protocol/src/index.js';

export class NonceCache {
  readonly #until = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;

  /** @param maxEntries @default 200000 */
  constructor(maxEntries = 200_000, now: () => number = Date.now) {
    this.#max = maxEntries;
    this.#now = now;
  }

  /** The SeenNonce of verifyAuthHandshake: true when already used, else remembers it until `until`. */
  readonly seen = (nonce: string, until: number): boolean => {
    const now = this.#now();
    if (this.#until.has(nonce)) {
      if ((this.#until.get(nonce) ?? 0) >= now) return true;
      this.#until.delete(nonce);
    }
    this.#pruneFront(now);
    if (this.#until.size >= this.#max) {
      // Insertion order is only roughly expiry order (times vary by the clock skew): sweep all.
      for (const [n, u] of this.#until) if (u < now) this.#until.delete(n);
      if (this.#until.size >= this.#max) {
        throw new QrauthError('QRA_ERR_RATE_LIMITED', 'the relay is handling too many new connections; try again in a minute');
      }
    }
    this.#until.set(nonce, until);
    return false;
  };

  #pruneFront(now: number): void {
    for (const [n, u] of this.#until) {
      if (u >= now) return;
      this.#until.delete(n);
    }
  }

  get size(): number {
    return this.#until.size;
  }
}
