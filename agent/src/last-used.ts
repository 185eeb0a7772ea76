/**
 * When each device last approved a login on this host, for `qrauth devices`. Kept in memory
 * and saved to <stateDir>/last-used.json (device ids and dates only; bounded). Mode 0600: which
 * phone approved when tells other local users who logs in and how, so only the agent reads it.
 */
import { join } from 'node:path';
import { ID_PATTERN } from '../../protocol/src/index.js';
import { SavedRecords } from './saved-records.js';
import { readStateJson } from './state-file.js';

const MAX_ENTRIES = 10_000;
/** Well above MAX_ENTRIES ids and dates (~60 bytes each). */
const MAX_FILE_BYTES = 4 << 20;

/** The file's well-formed entries (device id → ISO date); any other entry is skipped, not the whole file. */
function validEntries(json: unknown): Array<[string, string]> {
  if (!json || typeof json !== 'object') return [];
  return Object.entries(json as Record<string, unknown>).filter((e): e is [string, string] => ID_PATTERN.test(e[0]) && typeof e[1] === 'string' && !Number.isNaN(Date.parse(e[1])));
}

export class LastUsed {
  private readonly records: SavedRecords<string>;

  constructor(stateDir: string) {
    const path = join(stateDir, 'last-used.json');
    this.records = new SavedRecords(path, MAX_ENTRIES, (entries) => JSON.stringify(Object.fromEntries(entries)));
    try {
      // A file an older agent wrote 0644 is made 0600 here; a symlink or one not ours is not read.
      for (const [k, v] of readStateJson(path, { maxBytes: MAX_FILE_BYTES }, validEntries) ?? []) this.records.load(k, v);
    } catch {
      /* unsafe, unreadable or not JSON: start empty (the next save replaces it) */
    }
  }

  record(deviceId: string, when = new Date()): void {
    this.records.set(deviceId, when.toISOString());
  }

  get(deviceId: string): string | undefined {
    return this.records.get(deviceId);
  }

  /** Saves now (at shutdown), after any save in progress. */
  flush(): Promise<void> {
    return this.records.flush();
  }
}
