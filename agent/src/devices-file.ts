/**
 * A user's enrolled devices: a text file like authorized_keys (docs/protocol.md §4).
 * Read with the checks pam-u2f and google-authenticator-libpam make: no symlink, a regular
 * file owned by the user or root, not writable by group or others, size capped. It holds
 * public keys only, so reading it gives nobody a way in; writing it is what must be guarded.
 */
import { closeSync, constants, fstatSync, openSync, readSync, readlinkSync, writeSync, fsyncSync, renameSync, unlinkSync, mkdirSync, lstatSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { QrauthError, fromB64url, keyId, toB64url, DEVICE_NAME_PATTERN, type PasskeyInfo } from '../../protocol/src/index.js';
import sodium from 'sodium-native';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { printable } from './log.js';
import type { UserInfo } from './users.js';
import { type DevicePasskey, parsePasskey } from './webauthn.js';

export const DEVICES_FILE_MAX_BYTES = 64 * 1024;

/**
 * What the PAM client is told when the user's devices file cannot be used. The client may be an
 * unauthenticated ssh peer: paths and home directories go to the log, not to it. The module
 * shows it after "qrauth: ".
 */
export const DEVICES_FILE_ERROR_TEXT = 'cannot check your devices file; ask the administrator (see the system log)';
export const DEVICES_MAX = 100;

export interface Device {
  publicKey: Uint8Array;
  deviceId: string;
  enrolled: string; // YYYY-MM-DD
  name: string;
  /** The phone's passkey, when it was enrolled with one (approvals can then prove UV: webauthn.ts). */
  passkey?: DevicePasskey;
}

export interface DevicesFile {
  path: string;
  devices: Device[];
  /** Lines that were skipped, with their numbers, for `qrauth devices` and the log. */
  problems: string[];
  /** The file as read ('' when there is none), so edits keep comments. */
  text: string;
}

/**
 * A device line is under 300 characters, under 600 with a passkey (a 512-byte credential id, the
 * largest allowed, makes it about 1,300); anything much longer is a problem, not work.
 */
export const DEVICE_LINE_MAX_CHARS = 2048;
/** Problems kept for the log and `qrauth devices`; a file of 30,000 bad lines is one more line, not 30,000. */
export const DEVICES_PROBLEMS_MAX = 20;

const FORMAT_PROBLEM = 'not "ed25519 <public key> <YYYY-MM-DD> [passkey-…=…] <name>"; line skipped';
const KEY_TEXT = /^[A-Za-z0-9_-]{43}$/;
const DATE_TEXT = /^\d{4}-\d{2}-\d{2}$/;
// The old LINE_RE's `\s` and `.` (which stops at these), so the accepted format is unchanged.
// Sticky runs of one class with nothing after them: each is one forward scan, never a backtrack.
const WORD_RUN = /\S*/y;
const SPACE_RUN = /\s*/y;
const LINE_BREAK = /[\r\n\u2028\u2029]/;

type Fields = { key: string; date: string; options: string[]; name: string };

/**
 * Options between the date and the name: `key=value` words. A name cannot hold `=`
 * (DEVICE_NAME_PATTERN), so the first word without one starts the name, and a line an older agent
 * wrote reads as before. An older agent reading a line with options sees a name with `=` and
 * skips the line: it never uses a passkey device without its passkey.
 */
const OPTION_TEXT = /^([a-z][a-z0-9-]{0,31})=(\S+)$/;
export const PASSKEY_OPTIONS = { credentialId: 'passkey-id', publicKey: 'passkey-key', origin: 'passkey-origin', rpId: 'passkey-rpid' } as const;
const KNOWN_OPTIONS: ReadonlySet<string> = new Set(Object.values(PASSKEY_OPTIONS));

/**
 * Split a trimmed line into `ed25519 <key> <date> [<option>=<value> …] <name>` in one
 * left-to-right pass. The line regex this replaces backtracked (a crafted 64 KiB line took
 * seconds, at every login of that user: docs/BENCHMARKS.md, benchmark 7). Without options it
 * accepts exactly the lines `^ed25519\s+([A-Za-z0-9_-]{43})\s+(\d{4}-\d{2}-\d{2})\s+(.+)$` matched.
 */
function splitDeviceLine(line: string): Fields | null {
  let i = 0;
  const run = (re: RegExp): number => {
    re.lastIndex = i;
    re.exec(line);
    const from = i;
    i = re.lastIndex;
    return from;
  };
  const token = (): string => line.slice(run(WORD_RUN), i);
  const spaces = (): boolean => run(SPACE_RUN) < i;
  if (token() !== 'ed25519' || !spaces()) return null;
  const key = token();
  if (!KEY_TEXT.test(key) || !spaces()) return null;
  const date = token();
  if (!DATE_TEXT.test(date) || !spaces()) return null;
  const options: string[] = [];
  for (;;) {
    const from = i;
    const word = token();
    if (!word.includes('=')) {
      i = from;
      break;
    }
    if (!spaces()) return null; // options and no name
    options.push(word);
  }
  const name = line.slice(i);
  if (name === '' || LINE_BREAK.test(name)) return null;
  return { key, date, options, name };
}

/** The passkey named by a line's options, none, or why the line must be skipped. */
function passkeyOfOptions(options: readonly string[]): { passkey?: DevicePasskey } | { problem: string } {
  if (options.length === 0) return {};
  const given = new Map<string, string>();
  for (const o of options) {
    const m = OPTION_TEXT.exec(o);
    if (!m) return { problem: `option "${o.slice(0, 40)}" is not name=value` };
    // Unknown options are refused, not ignored (as sshd does in authorized_keys): a newer agent's
    // option may be a restriction, and ignoring it would grant more than the line says.
    if (!KNOWN_OPTIONS.has(m[1]!)) return { problem: `unknown option "${m[1]}"` };
    if (given.has(m[1]!)) return { problem: `option "${m[1]}" given twice` };
    given.set(m[1]!, m[2]!);
  }
  const credentialId = given.get(PASSKEY_OPTIONS.credentialId);
  const publicKey = given.get(PASSKEY_OPTIONS.publicKey);
  const origin = given.get(PASSKEY_OPTIONS.origin);
  if (credentialId === undefined || publicKey === undefined || origin === undefined) {
    return { problem: `a passkey needs ${PASSKEY_OPTIONS.credentialId}, ${PASSKEY_OPTIONS.publicKey} and ${PASSKEY_OPTIONS.origin}` };
  }
  let rpId = given.get(PASSKEY_OPTIONS.rpId);
  if (rpId === undefined) {
    try {
      rpId = new URL(origin).hostname;
    } catch {
      return { problem: 'the passkey origin is not a URL' };
    }
  }
  const passkey = parsePasskey({ credentialId, publicKey, origin, rpId });
  return 'problem' in passkey ? passkey : { passkey };
}

/**
 * Whether 32 bytes are a device key the agent can use: a canonical encoding of a point of the
 * prime-order subgroup of edwards25519 (libsodium's is_valid_point rejects the eight small-order
 * points, non-canonical y and points with a torsion part) that converts to X25519 for the offline
 * key. A key that passed the parser and failed there threw at the first typed code and ended the
 * agent (issue #10, item 2).
 */
export function isUsableDeviceKey(key: Uint8Array): boolean {
  if (key.length !== 32) return false;
  const b = Buffer.from(key);
  if (!sodium.crypto_core_ed25519_is_valid_point(b)) return false;
  try {
    sodium.crypto_sign_ed25519_pk_to_curve25519(Buffer.alloc(32), b);
  } catch {
    return false;
  }
  return true;
}

export function parseDevicesText(text: string, path = 'devices'): DevicesFile {
  const devices: Device[] = [];
  const problems: string[] = [];
  let problemsLeftOut = 0;
  // Problems quote the file (an option word), and `qrauth devices --user` prints them to root's
  // terminal: no control characters (escape sequences) from a user's file get there.
  const problem = (lineNo: number, what: string) => {
    if (problems.length < DEVICES_PROBLEMS_MAX) problems.push(printable(`${path}:${lineNo}: ${what}`));
    else problemsLeftOut++;
  };
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.length > DEVICE_LINE_MAX_CHARS) {
      problem(i + 1, `longer than ${DEVICE_LINE_MAX_CHARS} characters; line skipped`);
      return;
    }
    const fields = splitDeviceLine(line);
    if (!fields) {
      problem(i + 1, FORMAT_PROBLEM);
      return;
    }
    let publicKey: Uint8Array;
    try {
      publicKey = fromB64url(fields.key, 32);
    } catch {
      publicKey = new Uint8Array(0);
    }
    // Unused low bits set in the last character spell the same key another way: not ours.
    if (publicKey.length !== 32 || toB64url(publicKey) !== fields.key) {
      problem(i + 1, 'the public key is not 32 bytes of base64url; line skipped');
      return;
    }
    if (!isUsableDeviceKey(publicKey)) {
      problem(i + 1, 'the public key is not a valid Ed25519 public key; line skipped');
      return;
    }
    const name = fields.name.trim();
    if (!DEVICE_NAME_PATTERN.test(name)) {
      problem(i + 1, 'the device name has characters that are not allowed; line skipped');
      return;
    }
    const withPasskey = passkeyOfOptions(fields.options);
    if ('problem' in withPasskey) {
      problem(i + 1, `${withPasskey.problem}; line skipped`);
      return;
    }
    const deviceId = keyId(nodeCrypto, publicKey);
    if (seen.has(deviceId)) {
      problem(i + 1, 'device listed twice; line skipped');
      return;
    }
    if (devices.length >= DEVICES_MAX) {
      problem(i + 1, `more than ${DEVICES_MAX} devices; the rest is skipped`);
      return;
    }
    seen.add(deviceId);
    devices.push(withPasskey.passkey ? { publicKey, deviceId, enrolled: fields.date, name, passkey: withPasskey.passkey } : { publicKey, deviceId, enrolled: fields.date, name });
  });
  if (problemsLeftOut > 0) problems.push(`${path}: ${problemsLeftOut} more lines skipped`);
  return { path, devices, problems, text };
}

export type DeviceLine = Pick<Device, 'publicKey' | 'enrolled' | 'name'> & { passkey?: PasskeyInfo | undefined };

/** One device line; the passkey's RP ID is written only when it is not the origin's host (the default). */
export function formatDeviceLine(d: DeviceLine): string {
  const head = `ed25519 ${toB64url(d.publicKey)} ${d.enrolled}`;
  if (!d.passkey) return `${head} ${d.name}`;
  const p = d.passkey;
  const options = [`${PASSKEY_OPTIONS.credentialId}=${p.credentialId}`, `${PASSKEY_OPTIONS.publicKey}=${p.publicKey}`, `${PASSKEY_OPTIONS.origin}=${p.origin}`];
  if (p.rpId !== new URL(p.origin).hostname) options.push(`${PASSKEY_OPTIONS.rpId}=${p.rpId}`);
  return `${head} ${options.join(' ')} ${d.name}`;
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
  for (const d of f.devices) {
    if (d.passkey) Object.freeze(d.passkey);
    Object.freeze(d);
  }
  Object.freeze(f.devices);
  Object.freeze(f.problems);
  Object.freeze(f);
  parseCache.delete(path);
  parseCache.set(path, f);
  if (parseCache.size > PARSE_CACHE_MAX) parseCache.delete(parseCache.keys().next().value!);
  return f;
}

const S_ISVTX = 0o1000;

/**
 * Every directory from / down to the file's own is a real directory (no symlink), owned by root
 * and writable by nobody else. A sticky world-writable ancestor such as /tmp is allowed: nobody
 * else can rename or remove the root-owned directory in it. With `create`, missing directories
 * are made by root (0700), one at a time, each checked after it is made.
 */
export function checkRootOnlyPath(path: string, create: boolean): 'ok' | 'missing' {
  if (!isAbsolute(path) || normalize(path) !== path) {
    throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path}: an admin-managed devices file needs an absolute path without . or .. or //; fix authfile in the agent config`);
  }
  const parts = dirname(path).split('/').filter((p) => p !== '');
  const dirs = ['/', ...parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`)];
  for (const [i, dir] of dirs.entries()) {
    const own = i === dirs.length - 1;
    let st;
    try {
      st = lstatSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new QrauthError('QRA_ERR_DEVICES_FILE', `cannot check ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      if (!create) return 'missing';
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (m) {
        if ((m as NodeJS.ErrnoException).code !== 'EEXIST') throw new QrauthError('QRA_ERR_DEVICES_FILE', `cannot make ${dir}: ${(m as NodeJS.ErrnoException).code ?? (m as Error).message}`);
      }
      st = lstatSync(dir);
    }
    const why = 'root reads and writes admin-managed devices files only through directories that only root can change';
    if (st.isSymbolicLink()) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${dir} is a symbolic link; refusing to follow it (${why})`);
    if (!st.isDirectory()) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${dir} is not a directory (${why})`);
    if (st.uid !== 0) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${dir} is owned by uid ${st.uid}, not root; refusing it (${why}): chown root ${dir}`);
    if ((st.mode & 0o022) !== 0 && (own || (st.mode & S_ISVTX) === 0)) {
      throw new QrauthError('QRA_ERR_DEVICES_FILE', `${dir} is writable by group or others; refusing it (${why}): chmod go-w ${dir}`);
    }
  }
  return 'ok';
}

/**
 * Whose rights a read is limited to. The agent reads with CAP_DAC_READ_SEARCH (or as root), and
 * O_NOFOLLOW guards only the last component: a user's `~/.config/qrauth` linked to a directory
 * they cannot enter would let the agent read another's file on their behalf (security review:
 * `last-used`). The agent cannot take the user's uid in the shipped unit (User=qrauth,
 * NoNewPrivileges, no CAP_SETUID), so it walks the path itself, one directory fd at a time, and
 * goes on only where the user's uid or primary gid may search (mode bits; supplementary groups
 * are not counted, so it may refuse where the user could read, never the other way round).
 */
export interface ReadLimit {
  uid: number;
  gid: number | null;
}
/** A user, and when set, whose rights the read is limited to (see ReadLimit). */
export type DevicesReader = UserInfo & { onlyAs?: ReadLimit | undefined };

const MAX_LINKS = 40;

/** A home of / is no home (as in user-files.ts fileAccessFor). */
function underHome(path: string, user: UserInfo): boolean {
  const home = user.home.replace(/\/+$/, '');
  return home !== '' && path.startsWith(`${home}/`);
}

/** May `who` do `bit` (4 read, 1 search) on a file with this stat, by its mode bits? */
function permits(st: { uid: number; gid: number; mode: number }, who: ReadLimit, bit: number): boolean {
  if (who.uid === 0) return true;
  if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
  if (who.gid !== null && st.gid === who.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

/**
 * Open `path` as `who` would reach it: from /, each directory opened (O_DIRECTORY|O_NOFOLLOW) and
 * searched only if `who` may, each name looked up through /proc/self/fd/<dir> (so nobody can swap
 * a directory under the walk), links to directories followed by hand; the file itself must not be
 * one (O_NOFOLLOW, as for a login). null: missing where `who` may look.
 */
function openAs(path: string, who: ReadLimit): number | null {
  const denied = () => new QrauthError('QRA_ERR_DEVICES_FILE', `uid ${who.uid} may not read ${path} (permission denied on the way)`);
  const dirFlags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  const todo = path.split('/').filter((p) => p !== '');
  let links = 0;
  let dir = openSync('/', dirFlags);
  try {
    while (todo.length > 0) {
      const name = todo.shift()!;
      if (!permits(fstatSync(dir), who, 1)) throw denied();
      if (name === '.') continue;
      const at = `/proc/self/fd/${dir}/${name}`;
      let st;
      try {
        st = lstatSync(at);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return null;
        throw e;
      }
      if (st.isSymbolicLink()) {
        // The file itself a link: refused, as the login's O_NOFOLLOW open refuses it. Only
        // directories on the way are followed, or `last-used` would read what a login never does.
        if (todo.length === 0) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path} is a symbolic link; refusing to read it`);
        if (++links > MAX_LINKS) throw new QrauthError('QRA_ERR_DEVICES_FILE', `${path}: too many symbolic links`);
        const to = readlinkSync(at);
        todo.unshift(...to.split('/').filter((p) => p !== ''));
        if (to.startsWith('/')) {
          // Open before closing, as for `next`: if the open fails, `finally` closes `dir` once.
          const root = openSync('/', dirFlags);
          closeSync(dir);
          dir = root;
        }
        continue;
      }
      if (todo.length === 0) {
        // The file itself: O_NOFOLLOW as before, and readable by `who`.
        const fd = openSync(at, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        try {
          if (!permits(fstatSync(fd), who, 4)) throw denied();
        } catch (e) {
          closeSync(fd); // not handed on: closed here, whether fstat failed or the mode bits refused
          throw e;
        }
        return fd;
      }
      const next = openSync(at, dirFlags);
      closeSync(dir);
      dir = next;
    }
    return null;
  } finally {
    closeSync(dir);
  }
}

/**
 * Read a user's devices file with the strict checks. A missing file is no devices; an unsafe
 * file is an error (QRA_ERR_DEVICES_FILE), which the login treats as a failure, not as "no devices".
 * With `user.onlyAs`, only what that uid could read itself is read (ReadLimit).
 */
export function readDevicesFile(path: string, user: DevicesReader): DevicesFile {
  let fd: number;
  try {
    let limited: number | null;
    if (!user.onlyAs) limited = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    // In the home: as the user could. Elsewhere (authfile=/etc/qrauth/devices/%u) the admin's
    // file for this user, through directories only root can change, as readDevicesFileAs does.
    else if (underHome(path, user)) limited = openAs(path, user.onlyAs);
    else limited = checkRootOnlyPath(path, false) === 'missing' ? null : openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    if (limited === null) return { path, devices: [], problems: [], text: '' };
    fd = limited;
  } catch (e) {
    if (e instanceof QrauthError) throw e;
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
 * Replace a devices file atomically (temp file + fsync + rename), mode 0600, owned by whoever
 * writes it. Refuses to write through a symlinked file. Never chowns: root writing for a user
 * runs this as that user (user-files.ts), so the file is theirs and a link of theirs can only
 * lead where they could write anyway.
 */
export function writeDevicesText(path: string, text: string): void {
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
export function addDeviceLine(text: string, d: DeviceLine): string {
  const base = text === '' ? `${DEVICES_FILE_HEADER}\n` : text.endsWith('\n') ? text : `${text}\n`;
  return `${base}${formatDeviceLine(d)}\n`;
}

/** The file text without the lines of these device ids (comments and other lines kept). */
export function removeDeviceLines(text: string, deviceIds: ReadonlySet<string>): string {
  return text
    .split('\n')
    .filter((raw) => {
      const line = raw.trim();
      const fields = line.length <= DEVICE_LINE_MAX_CHARS ? splitDeviceLine(line) : null;
      if (!fields) return true;
      try {
        return !deviceIds.has(keyId(nodeCrypto, fromB64url(fields.key, 32)));
      } catch {
        return true;
      }
    })
    .join('\n');
}

/** Make the directory for a devices file (0700), as whoever writes it: see writeDevicesText. */
export function ensureDevicesDir(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
}
