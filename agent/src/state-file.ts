/**
 * The agent's own small state files in <stateDir> (code-budget.json, leases.json, last-used.json,
 * seen-addresses.json, passkey-counters.json): one careful way to read and write them, so every
 * store gets the same checks. What a damaged file means (codes off, leases set aside, passkey
 * approvals refused, start empty) stays each store's own policy: readStateFile only says why.
 *
 * Read: opened O_NOFOLLOW (a symlink is refused, never followed), then checked on the open
 * descriptor (no race with a rename): a regular file, owned by the agent's euid, not group- or
 * world-writable, at most maxBytes; a file others may read (an older agent wrote 0644) is made
 * 0600 before it is read. Write: a temp file in the same directory, created O_EXCL 0600, written,
 * fsynced, renamed over the file (a crash leaves the old state or the new, never half), the
 * directory fsynced so the rename itself lasts; the temp file is removed when any step fails.
 */
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** The file is there but cannot be trusted; `reason` says why, for the log. */
export class StateFileDamaged extends Error {
  constructor(readonly reason: string) {
    super(`damaged: ${reason}`);
    this.name = 'StateFileDamaged';
  }
}

function sizeText(bytes: number): string {
  return bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : `${bytes} bytes`;
}

/**
 * The text of a state file, or null when there is none. Throws StateFileDamaged (and nothing
 * else) when the file is there but unsafe or unreadable.
 */
export function readStateFile(path: string, opts: { maxBytes: number }): { text: string } | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put in its place must not hang the agent on open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new StateFileDamaged(`cannot open: ${code ?? (e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    const euid = process.geteuid?.() ?? 0;
    if (!st.isFile()) throw new StateFileDamaged('not a regular file');
    if (st.uid !== euid) throw new StateFileDamaged(`owned by uid ${st.uid}, not the agent's (${euid})`);
    if ((st.mode & 0o022) !== 0) throw new StateFileDamaged('group- or world-writable');
    if (st.size > opts.maxBytes) throw new StateFileDamaged(`larger than ${sizeText(opts.maxBytes)}`);
    if ((st.mode & 0o7777) !== 0o600) fchmodSync(fd, 0o600);
    // Read to the end, not just st.size: a file that grew since fstat is still capped.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.alloc(Math.min(Math.max(st.size - total, 0) + 1, opts.maxBytes + 1 - total));
      const n = readSync(fd, buf, 0, buf.length, total);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
      if (total > opts.maxBytes) throw new StateFileDamaged(`larger than ${sizeText(opts.maxBytes)}`);
    }
    return { text: Buffer.concat(chunks, total).toString('utf8') };
  } catch (e) {
    if (e instanceof StateFileDamaged) throw e;
    // fchmod on a read-only filesystem, EIO: not a file to trust either.
    throw new StateFileDamaged(`cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * readStateFile, then JSON, then `check` (the caller's schema). Throws StateFileDamaged for an
 * unsafe file, 'not JSON', or the check's own message.
 */
export function readStateJson<T>(path: string, opts: { maxBytes: number }, check: (json: unknown) => T): T | null {
  const file = readStateFile(path, opts);
  if (!file) return null;
  let json: unknown;
  try {
    json = JSON.parse(file.text);
  } catch {
    throw new StateFileDamaged('not JSON');
  }
  try {
    return check(json);
  } catch (e) {
    throw new StateFileDamaged((e as Error).message);
  }
}

function tempPathOf(path: string): string {
  return `${path}.${process.pid}.tmp`;
}

const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** The rename is durable only once the directory is on disk; a filesystem that refuses this still has the file. */
function syncDirectory(path: string): void {
  let fd: number;
  try {
    fd = openSync(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    /* e.g. EINVAL on some filesystems: nothing more can be done */
  } finally {
    closeSync(fd);
  }
}

/** Replace a state file atomically with `text` (0600). Throws when it could not; the old file then stays. */
export function writeStateFileAtomic(path: string, text: string): void {
  const tmp = tempPathOf(path);
  // A leftover temp file would keep its old mode and owner: start from none, create it ourselves.
  try {
    unlinkSync(tmp);
  } catch {
    /* none left over */
  }
  const fd = openSync(tmp, TEMP_FLAGS, 0o600);
  try {
    try {
      const data = Buffer.from(text, 'utf8');
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  syncDirectory(path);
}

/** writeStateFileAtomic off the event loop's thread: for stores that write while logins run. */
export async function writeStateFileAtomicAsync(path: string, text: string): Promise<void> {
  const tmp = tempPathOf(path);
  await unlink(tmp).catch(() => {
    /* none left over */
  });
  const fh = await open(tmp, TEMP_FLAGS, 0o600);
  try {
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {
      /* already gone */
    });
    throw e;
  }
  await syncDirectoryAsync(path);
}

async function syncDirectoryAsync(path: string): Promise<void> {
  const dir = await open(dirname(path), constants.O_RDONLY | constants.O_DIRECTORY).catch(() => null);
  if (!dir) return;
  await dir.sync().catch(() => {
    /* as in syncDirectory */
  });
  await dir.close();
}
