/**
 * When each device last approved a login on this host, for `qrauth devices`. Kept in memory
 * and saved to <stateDir>/last-used.json (device ids and dates only; bounded).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ID_PATTERN } from '../../protocol/src/index.js';

const MAX_ENTRIES = 10_000;

export class LastUsed {
  private readonly map = new Map<string, string>();
  private readonly path: string;
  private saveTimer: NodeJS.Timeout | null = null;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'last-used.json');
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
    try {
      writeFileSync(`${this.path}.tmp`, JSON.stringify(Object.fromEntries(this.map)), { mode: 0o644 });
      renameSync(`${this.path}.tmp`, this.path);
    } catch {
      /* read-only state dir: last-used stays in memory */
    }
  }
}
