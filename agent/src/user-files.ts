/**
 * Root reading or writing a devices file on a user's behalf (`sudo qrauth … --user alice`).
 *
 * Root must never follow a path the user controls: with `~/.config` or `~/.config/qrauth` a
 * symlink to /etc/cron.daily, a root write lands there (issue #10). O_NOFOLLOW guards only the
 * last component, and checking each component first is a race the user can win. So:
 *  - under the user's home, the read or write runs in a child process with the user's uid and
 *    gid and no supplementary groups (libuv calls setgroups(0, NULL) before setgid/setuid): it
 *    can touch only what the user could touch anyway, and the file it makes is theirs;
 *  - anywhere else (admin-managed `authfile=/etc/qrauth/devices/%u`) root works directly, but
 *    only through directories only root can change, checked component by component; once they
 *    are, nobody else can swap anything on the way, so the check cannot be raced.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QrauthError, bool, custom, int, object, oneOf, optional, parse, refine, str, type Check } from '../../protocol/src/index.js';
import { DEVICES_FILE_MAX_BYTES, type DevicesFile, checkRootOnlyPath, ensureDevicesDir, parseDevicesText, readDevicesFile, writeDevicesText } from './devices-file.js';
import { USER_NAME_PATTERN, type UserInfo } from './users.js';

export interface FileOwner extends UserInfo {
  gid: number;
}

/** How the caller may touch `path` for `user`: see the module comment. */
export type FileAccess = 'direct' | 'as-user' | 'root-only-path';

export function fileAccessFor(user: FileOwner, path: string): FileAccess {
  // A non-root caller can only touch what it may anyway (and target() allows only itself).
  if (process.getuid?.() !== 0) return 'direct';
  // A home of / is no home: such a user's file is treated like an admin-managed one.
  const home = user.home.replace(/\/+$/, '');
  if (home !== '' && path.startsWith(`${home}/`)) return user.uid === 0 ? 'direct' : 'as-user';
  return 'root-only-path';
}

/** A user's devices file, read with that user's rights when root acts for them. */
export async function readDevicesFileAs(user: FileOwner, path: string): Promise<DevicesFile> {
  switch (fileAccessFor(user, path)) {
    case 'direct':
      return readDevicesFile(path, user);
    case 'root-only-path':
      // A missing directory is no devices; it is not looked into again (someone could make it meanwhile).
      if (checkRootOnlyPath(path, false) === 'missing') return { path, devices: [], problems: [], text: '' };
      return readDevicesFile(path, user);
    case 'as-user': {
      const reply = await runAsUser(user, { op: 'read', path, user: { name: user.name, uid: user.uid, home: user.home } });
      return parseDevicesText(reply.text ?? '', path);
    }
  }
}

/** Replace a user's devices file (making its directory), with that user's rights when root acts for them. */
export async function writeDevicesFileAs(user: FileOwner, path: string, text: string): Promise<void> {
  switch (fileAccessFor(user, path)) {
    case 'direct':
      ensureDevicesDir(path);
      writeDevicesText(path, text);
      return;
    case 'root-only-path':
      checkRootOnlyPath(path, true);
      writeDevicesText(path, text);
      return;
    case 'as-user':
      await runAsUser(user, { op: 'write', path, user: { name: user.name, uid: user.uid, home: user.home }, text });
  }
}

export { checkRootOnlyPath } from './devices-file.js';

// --- the child: request on stdin, reply on stdout, both JSON, both bounded ---

/** JSON may escape a control byte as 6 characters; headroom for the rest of the message. */
export const USER_FILE_IO_MAX = DEVICES_FILE_MAX_BYTES * 6 + 4096;
const USER_FILE_TIMEOUT_MS = 30_000;

/** The file text: any characters (newlines too), bounded like the file. */
const fileText: Check<string> = refine(custom((v): v is string => typeof v === 'string', 'expected the devices file text'), (v) =>
  Buffer.byteLength(v) > DEVICES_FILE_MAX_BYTES ? 'expected the devices file text, at most 64 KiB' : null,
);
const absolutePath = str({ max: 4096, min: 1, pattern: /^\// });

export const userFileRequest = object({
  op: oneOf(['read', 'write'] as const),
  path: absolutePath,
  user: object({ name: str({ max: 256, pattern: USER_NAME_PATTERN }), uid: int({ min: 1, max: 0xfffffffe }), home: absolutePath }),
  text: optional(fileText),
});
export interface UserFileRequest {
  op: 'read' | 'write';
  path: string;
  user: UserInfo;
  text?: string | undefined;
}

const userFileReply = object({
  ok: bool(),
  text: optional(fileText),
  code: optional(oneOf(['QRA_ERR_DEVICES_FILE', 'QRA_ERR_INTERNAL'] as const)),
  message: optional(str({ max: 600 })),
});
export interface UserFileReply {
  ok: boolean;
  text?: string | undefined;
  code?: 'QRA_ERR_DEVICES_FILE' | 'QRA_ERR_INTERNAL' | undefined;
  message?: string | undefined;
}

/** The helper next to this module: compiled JS when installed, TypeScript (through tsx) in a checkout. */
function helperCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return ['--import', import.meta.resolve('tsx'), join(dirname(here), 'user-file-helper.ts')];
  return [join(dirname(here), 'user-file-helper.js')];
}

function runAsUser(user: FileOwner, request: UserFileRequest): Promise<UserFileReply> {
  const verb = request.op === 'read' ? 'read' : 'write';
  return new Promise((resolve, reject) => {
    const fail = (message: string) => reject(new QrauthError('QRA_ERR_DEVICES_FILE', `cannot ${verb} ${request.path} as ${user.name}: ${message}`));
    let child;
    try {
      // uid/gid: libuv drops supplementary groups (setgroups(0, NULL)) before setgid/setuid.
      // A bare environment and cwd /: nothing of root's leaks into the child.
      child = spawn(process.execPath, helperCommand(), {
        uid: user.uid,
        gid: user.gid,
        cwd: '/',
        env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: USER_FILE_TIMEOUT_MS,
        killSignal: 'SIGKILL',
      });
    } catch (e) {
      fail(`could not start the helper (${(e as Error).message})`);
      return;
    }
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let overflow = false;
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > USER_FILE_IO_MAX) {
        overflow = true;
        child.kill('SIGKILL');
        return;
      }
      out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 2048) err += b.toString('utf8');
    });
    child.on('error', (e) => fail(`could not start the helper (${e.message})`));
    child.on('close', (code, signal) => {
      if (overflow) return fail('the helper replied with more than expected');
      if (signal) return fail(signal === 'SIGKILL' ? `the helper did not finish within ${USER_FILE_TIMEOUT_MS / 1000}s` : `the helper was stopped by ${signal}`);
      let reply: UserFileReply;
      try {
        reply = parse(userFileReply, JSON.parse(Buffer.concat(out).toString('utf8')), 'helper reply');
      } catch {
        const first = err.split('\n').find((l) => l.trim() !== '') ?? `exit ${code}`;
        return fail(`the helper failed: ${first.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 200)}`);
      }
      if (reply.ok) return resolve(reply);
      reject(new QrauthError(reply.code ?? 'QRA_ERR_DEVICES_FILE', reply.message ?? `cannot ${verb} ${request.path} as ${user.name}`));
    });
    child.stdin.on('error', () => {
      /* the child died early: 'close' reports it */
    });
    child.stdin.end(JSON.stringify(request));
  });
}
