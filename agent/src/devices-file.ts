/**
 * A user's enrolled devices: a text file like authorized_keys (docs/protocol.md §4).
 * Read with the checks pam-u2f and google-authenticator-libpam make: no symlink, a regular
 * file owned by the user or root, not writable by group or others, size capped. It holds
 * public keys only, so reading it gives nobody a way in; writing it is what must be guarded.
 */
import { chownSync, closeSync, constants, fstatSync, openSync, readSync, writeSync, fsyncSync, renameSync, fchownSync, unlinkSync, mkdirSync, lstatSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { QrauthError, fromB64url, keyId, toB64url, DEVICE_NAME_PATTERN } from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { UserInfo } from './users.js';

export const DEVICES_FILE_MAX_BYTES = 64 * 1024;
export const DEVICES_MAX = 100;

export interface Device {
  publicKey: Uint8Array;
  deviceId: string;
  enrolled: string; // YYYY-MM-DD
  name: string;
}

export interface DevicesFile {
  path: string;
  devices: Device[];
  /** Lines that were skipped, with their numbers, for `qrauth devices` and the log. */
  problems: string[];
  /** The file as read ('' when there is none), so edits keep comments. */
  text: string;
}

const LINE_RE = /^ed25519\s+([A-Za-z0-9_-]{43})\s+(\d{4}-\d{2}-\d{2})\s+(.+)$/;

export function parseDevicesText(text: string, path = 'devices'): DevicesFile {
  const devices: Device[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = LINE_RE.exec(line);
    if (!m) {
      problems.push(`${path}:${i + 1}: not "ed25519 <public key> <YYYY-MM-DD> <name>"; line skipped`);
      return;
    }
    let publicKey: Uint8Array;
    try {
      publicKey = fromB64url(m[1]!, 32);
    } catch {
      problems.push(`${path}:${i + 1}: the public key is not 32 bytes of base64url; line skipped`);
      return;
    }
    const name = m[3]!.trim();
    if (!DEVICE_NAME_PATTERN.test(name)) {
      problems.push(`${path}:${i + 1}: the device name has characters that are not allowed; line skipped`);
      return;
    }
    const deviceId = keyId(nodeCrypto, publicKey);
    if (seen.has(deviceId)) {
      problems.push(`${path}:${i + 1}: device listed twice; line skipped`);
      return;
    }
    if (devices.length >= DEVICES_MAX) {
      problems.push(`${path}:${i + 1}: more than ${DEVICES_MAX} devices; the rest is skipped`);
      return;
    }
    seen.add(deviceId);
    devices.push({ publicKey, deviceId, enrolled: m[2]!, name });
  });
  return { path, devices, problems, text };
}

export function formatDeviceLine(d: Pick<Device, 'publicKey' | 'enrolled' | 'name'>): string {
  return `ed25519 ${toB64url(d.publicKey)} ${d.enrolled} ${d.name}`;
}

/** Expand the authfile pattern for a user: `~` → home, `%u` → user name. */
export function devicesPath(pattern: string, user: UserInfo): string {
  let p = pattern.replace(/%u/g, user.name);
  if (p.startsWith('~/')) p = join(user.home, p.slice(2));
  return p;
}

// The agent reads a user's file at every BEGIN and every decision (so a revoke counts at once).
// Parsing hashes each key for its id; the last parse of each path is kept and reused while the
// file's text is the same, byte for byte. Bounded: the oldest path goes when there are too many.
const PARSE_CACHE_MAX = 1024;
const parseCache = new Map<string, DevicesFile>();

function parseCached(text: string, path: string): DevicesFile {
  const hit = parseCache.get(path);
  if (hit && hit.text === text) return hit;
  const f = parseDevicesText(text, path);
  for (const d of f.devices) Object.freeze(d);
  Object.freeze(f.devices);
  Object.freeze(f.problems);
  Object.freeze(f);
  parseCache.delete(path);
  parseCache.set(path, f);
  if (parseCache.size > PARSE_CACHE_MAX) parseCache.delete(parseCache.keys().next().value!);
  return f;
}

/**
 * Read a user's devices file with the strict checks. A missing file is no devices; an unsafe
 * file is an error (QRA_ERR_DEVICES_FILE), which the login treats as a failure, not as "no devices".
 */
export function readDevicesFile(path: string, user: UserInfo): DevicesFile {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { path, devices: [], problems: [], text: '' };
    if (code === 'ELOOP') throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is a symbolic link; refusing to read it`);
    throw new QrauthError('QRA_ERR_DEVICES_FILE', `cannot open ${path}: ${code ?? (e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is not a regular file`);
    if (st.uid !== user.uid && st.uid !== 0) {
      throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} must be owned by ${user.name} or root`);
    }
    if ((st.mode & 0o022) !== 0) {
      throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is writable by group or others (chmod 600 ${path})`);
    }
    if (st.size > DEVICES_FILE_MAX_BYTES) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is larger than 64 KiB`);
    const b = Buffer.alloc(Number(st.size));
    let n = 0;
    while (n < b.length) {
      const r = readSync(fd, b, n, b.length - n, n);
      if (r === 0) break;
      n += r;
    }
    return parseCached(b.subarray(0, n).toString('utf8'), path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace a devices file atomically (temp file + fsync + rename), mode 0600, owned by `owner`
 * (the user, or root for admin-managed files). Refuses to write through a symlinked file.
 */
export function writeDevicesText(path: string, text: string, owner: { uid: number; gid: number }): void {
  try {
    if (lstatSync(path).isSymbolicLink()) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is a symbolic link; refusing to write it`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (Buffer.byteLength(text) > DEVICES_FILE_MAX_BYTES) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} would be larger than 64 KiB`);
  const tmp = `${path}.qrauth-${process.pid}-${Date.now()}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text);
    if (process.getuid?.() === 0) fchownSync(fd, owner.uid, owner.gid);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to remove */
    }
    throw e;
  }
}

export const DEVICES_FILE_HEADER = '# qrauth devices: one device a line (ed25519 <public key> <enrolled> <name>). Manage with `qrauth`.';

/** The file text with one device added at the end (comments and order kept). */
export function addDeviceLine(text: string, d: Pick<Device, 'publicKey' | 'enrolled' | 'name'>): string {
  const base = text === '' ? `${DEVICES_FILE_HEADER}\n` : text.endsWith('\n') ? text : `${text}\n`;
  return `${base}${formatDeviceLine(d)}\n`;
}

/** The file text without the lines of these device ids (comments and other lines kept). */
export function removeDeviceLines(text: string, deviceIds: ReadonlySet<string>): string {
  return text
    .split('\n')
    .filter((raw) => {
      const m = LINE_RE.exec(raw.trim());
      if (!m) return true;
      try {
        return !deviceIds.has(keyId(nodeCrypto, fromB64url(m[1]!, 32)));
      } catch {
        return true;
      }
    })
    .join('\n');
}

/** Make the directory for a devices file: 0700, owned by the user when it is under their home. */
export function ensureDevicesDir(path: string, owner: { uid: number; gid: number }, home: string): void {
  const dir = dirname(path);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created && process.getuid?.() === 0 && dir.startsWith(`${home}/`)) {
    // chown every directory we created under the home, so the user owns ~/.config/qrauth.
    let d = dir;
    while (d.startsWith(`${home}/`) && d.length >= created.length) {
      chownSync(d, owner.uid, owner.gid);
      d = dirname(d);
    }
  }
}
