/**
 * When each device last approved a login on this host, for `qrauth devices`. Kept in memory
 * and saved to <stateDir>/last-used.json (device ids and dates only; bounded). Mode 0600: which
 * phone approved when tells other local users who logs in and how, so only the agent reads it.
 */
import { chmodSync, lstatSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ID_PATTERN } from '../../protocol/src/index.js';

const MAX_ENTRIES = 10_000;

export class LastUsed {
  private readonly map = new Map<string, string>();
  private readonly path: string;
  private saveTimer: NodeJS.Timeout | null = null;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'last-used.json');
    this.makePrivate();
    try {
      const data = JSON.parse(readFileSync(this.path, 'utf8')) as unknown;
      if (data && typeof data === 'object') {
        for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
          if (ID_PATTERN.test(k) && typeof v === 'string' && !Number.isNaN(Date.parse(v)) && this.map.size < MAX_ENTRIES) this.map.set(k, v);
        }
      }
    } catch {
      /* no file yet, or unreadable: start empty */
    }
  }

  record(deviceId: string, when = new Date()): void {
    this.map.delete(deviceId);
    this.map.set(deviceId, when.toISOString());
    while (this.map.size > MAX_ENTRIES) this.map.delete(this.map.keys().next().value!);
    if (!this.saveTimer) {
      this.saveTimer = setTimeout(() => this.flush(), 1000);
      this.saveTimer.unref();
    }
  }

  get(deviceId: string): string | undefined {
    return this.map.get(deviceId);
  }

  flush(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    const tmp = `${this.path}.tmp`;
    try {
      // A leftover temp file keeps its old mode through writeFileSync: start from none.
      rmSync(tmp, { force: true });
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.map)), { mode: 0o600, flag: 'wx' });
      renameSync(tmp, this.path);
    } catch {
      /* read-only state dir: last-used stays in memory */
    }
  }

  /** A file written by an older agent (0644) becomes 0600; a symlink is left alone (chmod would follow it). */
  private makePrivate(): void {
    try {
      const st = lstatSync(this.path);
      if (st.isFile() && (st.mode & 0o077) !== 0) chmodSync(this.path, 0o600);
    } catch {
      /* no file yet, or a read-only state dir */
    }
  }
}
