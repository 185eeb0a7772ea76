/**
 * Handshake nonces seen recently, so a captured handshake cannot be replayed while its time is
 * still inside the clock window. Bounded: when full of live nonces it refuses new handshakes
 * (fail closed) rather than forget a nonce that could still be replayed. Each address may hold
 * only its share, so that one address cannot fill it and lock everyone else out.
 */
import { QrauthError } from '../../protocol/src/index.js';

interface Entry {
  until: number;
  address: string;
}

export class NonceCache {
  /** In insertion order, which is only roughly expiry order (a handshake's time may be off by the clock window). */
  readonly #entries = new Map<string, Entry>();
  /** Each address's nonces (nonce → until); an address holding none has no map. */
  readonly #byAddress = new Map<string, Map<string, number>>();
  readonly #max: number;
  readonly #maxPerAddress: number;
  readonly #now: () => number;
  /** No entry expires before this: while full, a sweep before then would free nothing. */
  #earliest = Number.POSITIVE_INFINITY;

  /**
   * @param maxEntries @default 200000
   * @param maxPerAddress the most nonces one address may hold @default maxEntries
   */
  constructor(maxEntries = 200_000, now: () => number = Date.now, maxPerAddress = maxEntries) {
    this.#max = maxEntries;
    this.#now = now;
    this.#maxPerAddress = maxPerAddress;
  }

  /**
   * For a SeenNonce of verifyAuthHandshake, with the client's `address` (an `addressKey`; not the
   * id a SeenNonce is given): true when already used, else remembers it until `until`. Throws
   * QRA_ERR_RATE_LIMITED when `address` holds its share or the cache is full of live nonces.
   */
  readonly seen = (nonce: string, until: number, address = ''): boolean => {
    const now = this.#now();
    const known = this.#entries.get(nonce);
    if (known) {
      if (known.until >= now) return true;
      this.#forget(nonce, known.address);
    }
    this.#pruneFront(now);
    const own = this.#byAddress.get(address);
    if (own && own.size >= this.#maxPerAddress) {
      // At most maxPerAddress entries to look at, and only for an address at its share.
      for (const [n, u] of own) if (u < now) this.#forget(n, address);
      if (own.size >= this.#maxPerAddress) {
        throw new QrauthError('QRA_ERR_RATE_LIMITED', 'too many new connections from this address; try again in a few minutes');
      }
    }
    if (this.#entries.size >= this.#max) {
      if (this.#earliest < now) this.#sweep(now);
      if (this.#entries.size >= this.#max) {
        throw new QrauthError('QRA_ERR_RATE_LIMITED', 'the relay is handling too many new connections; try again in a minute');
      }
    }
    this.#entries.set(nonce, { until, address });
    // Not `own`: the sweeps above drop an address's map once it is empty.
    const mine = this.#byAddress.get(address) ?? new Map<string, number>();
    this.#byAddress.set(address, mine.set(nonce, until));
    this.#earliest = Math.min(this.#earliest, until);
    return false;
  };

  get size(): number {
    return this.#entries.size;
  }

  #pruneFront(now: number): void {
    for (const [n, e] of this.#entries) {
      if (e.until >= now) return;
      this.#forget(n, e.address);
    }
  }

  /** Forgets every expired nonce, and learns when the next one expires. */
  #sweep(now: number): void {
    let earliest = Number.POSITIVE_INFINITY;
    for (const [n, e] of this.#entries) {
      if (e.until < now) this.#forget(n, e.address);
      else earliest = Math.min(earliest, e.until);
    }
    this.#earliest = earliest;
  }

  #forget(nonce: string, address: string): void {
    this.#entries.delete(nonce);
    const own = this.#byAddress.get(address);
    own?.delete(nonce);
    if (own?.size === 0) this.#byAddress.delete(address);
  }
}
