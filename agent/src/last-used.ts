/**
 * When each device last approved a login on this host, for `qrauth devices`. Kept in memory
 * and saved to <stateDir>/last-used.json (device ids and dates only; bounded). Mode 0600: which
 * phone approved when tells other local users who logs in and how, so only the agent reads it.
 */
import { join } from 'node:path';
import { ID_PATTERN } from '../../protocol/src/index.js';
import { readStateFile, writeStateFileAtomic, writeStateFileAtomicAsync } from './state-file.js';

const MAX_ENTRIES = 10_000;
/** Well above MAX_ENTRIES ids and dates (~60 bytes each). */
const MAX_FILE_BYTES = 4 << 20;

export class LastUsed {
  private readonly map = new Map<string, string>();
  private readonly path: string;
  private saveTimer: NodeJS.Timeout | null = null;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'last-used.json');
    try {
      // A file an older agent wrote 0644 is made 0600 here; a symlink or one not ours is not read.
      const file = readStateFile(this.path, { maxBytes: MAX_FILE_BYTES });
      if (!file) return;
      const data = JSON.parse(file.text) as unknown;
      if (data && typeof data === 'object') {
        for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
          if (ID_PATTERN.test(k) && typeof v === 'string' && !Number.isNaN(Date.parse(v)) && this.map.size < MAX_ENTRIES) this.map.set(k, v);
        }
      }
    } catch {
      /* unsafe or unreadable: start empty (the next save replaces it) */
    }
  }

  record(deviceId: string, when = new Date()): void {
    this.map.delete(deviceId);
    this.map.set(deviceId, when.toISOString());
    while (this.map.size > MAX_ENTRIES) this.map.delete(this.map.keys().next().value!);
    if (!this.saveTimer) {
      this.saveTimer = setTimeout(() => this.saveInBackground(), 1000);
      this.saveTimer.unref();
    }
  }

  /** The timer's save: off the event loop (no blocking fsync while logins run), one at a time. */
  private saveInBackground(): void {
    this.saveTimer = null;
    const text = this.text();
    this.writing = this.writing.then(() => writeStateFileAtomicAsync(this.path, text)).catch(() => {
      /* read-only state dir: last-used stays in memory */
    });
  }

  private writing: Promise<void> = Promise.resolve();

  private text(): string {
    return JSON.stringify(Object.fromEntries(this.map));
  }

  get(deviceId: string): string | undefined {
    return this.map.get(deviceId);
  }

  /** Saves now, blocking (at shutdown). */
  flush(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      writeStateFileAtomic(this.path, this.text());
    } catch {
      /* read-only state dir: last-used stays in memory */
    }
  }
}
