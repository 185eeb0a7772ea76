/**
 * A small bounded record the agent keeps in memory and in a state file: a map in recency order
 * (a key set again moves to the end; past `max` entries the oldest go first), saved a second
 * after a change, off the event loop and one write at a time, so a burst of logins costs one
 * write and no blocking fsync; flush() saves at once (at shutdown), after any write in progress. A state dir that
 * cannot be written keeps the record in memory only. The file's format (and reading it back,
 * which differs per record) is the owner's: last-used.ts, login-source.ts's SeenAddresses.
 * The passkey sign counters keep their own save loop: webauthn.ts's PasskeyCounters says why.
 */
import { writeStateFileAtomic, writeStateFileAtomicAsync } from './state-file.js';

export class SavedRecords<V> {
  private readonly map = new Map<string, V>();
  private saveTimer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  /** `toText`: the file's whole text from the entries (called at each save). */
  constructor(
    private readonly path: string,
    private readonly max: number,
    private readonly toText: (entries: ReadonlyMap<string, V>) => string,
  ) {}

  /** An entry read back from the file at start: kept while there is room, nothing saved. */
  load(key: string, value: V): void {
    if (this.map.size < this.max) this.map.set(key, value);
  }

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  /** Sets `key` (now the newest), drops the oldest past `max`, and saves a second later. */
  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    if (!this.saveTimer) {
      this.saveTimer = setTimeout(() => this.saveInBackground(), 1000);
      this.saveTimer.unref();
    }
  }

  private saveInBackground(): void {
    this.saveTimer = null;
    const text = this.toText(this.map);
    this.writing = this.writing.then(() => writeStateFileAtomicAsync(this.path, text)).catch(() => {
      /* read-only state dir: kept in memory until the agent stops */
    });
  }

  /**
   * Saves now (at shutdown), once a background save still writing has finished: it holds an
   * older copy and the same temporary file name, and must not land over this one.
   */
  async flush(): Promise<void> {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    await this.writing;
    try {
      writeStateFileAtomic(this.path, this.toText(this.map));
    } catch {
      /* read-only state dir: kept in memory until the agent stops */
    }
  }
}
