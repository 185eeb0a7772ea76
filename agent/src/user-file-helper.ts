/**
 * Internal to the qrauth CLI: user-files.ts starts this with a user's uid and gid (and no
 * supplementary groups) to read or write that user's devices file when root acts for them.
 * One JSON request on stdin, one JSON reply on stdout; the normal O_NOFOLLOW/O_EXCL/rename
 * code then touches only what the user could touch anyway.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isQrauthError, parse } from '../../protocol/src/index.js';
import { ensureDevicesDir, readDevicesFile, writeDevicesText } from './devices-file.js';
import { USER_FILE_IO_MAX, type UserFileReply, type UserFileRequest, userFileRequest } from './user-files.js';

async function readRequest(): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const b of process.stdin as AsyncIterable<Buffer>) {
    n += b.length;
    if (n > USER_FILE_IO_MAX) throw new Error('the request is larger than expected');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Printable and bounded: paths and link targets are the user's, and root reads this message. */
function clean(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 580);
}

/** The first symbolic link from the home directory down to `path`, if any. */
function firstLinkOnTheWay(home: string, path: string): { at: string; to: string } | null {
  if (!path.startsWith(`${home}/`)) return null;
  let at = home;
  for (const part of ['', ...path.slice(home.length + 1).split('/')]) {
    at = part === '' ? at : join(at, part);
    try {
      if (lstatSync(at).isSymbolicLink()) return { at, to: readlinkSync(at) };
    } catch {
      return null;
    }
  }
  return null;
}

/** What went wrong, for root to read; a refused write through the user's link is named as such. */
function explain(e: unknown, req: UserFileRequest): UserFileReply {
  const { name, home } = req.user;
  const errno = (e as NodeJS.ErrnoException).code;
  const denied = isQrauthError(e) ? /: (EACCES|EPERM)$/.test(e.message) : errno === 'EACCES' || errno === 'EPERM';
  const doing = req.op === 'read' ? 'read' : 'write';
  if (!denied) {
    const message = isQrauthError(e) ? e.message : `cannot ${doing} ${req.path}: ${errno ?? (e as Error).message}`;
    return { ok: false, code: 'QRA_ERR_DEVICES_FILE', message: clean(message) };
  }
  const shown = (p: string) => (p === home ? `~${name}` : `~${name}${p.slice(home.length)}`);
  const link = firstLinkOnTheWay(home, req.path);
  const message = link
    ? `${shown(link.at)} is a symbolic link (to ${link.to}) through which ${name} may not ${doing} ${req.path} (permission denied); refusing: root does not follow a user's links for them. Remove the link, or let ${name} run qrauth themselves`
    : `${name} may not ${doing} ${req.path} (permission denied); refusing: root acts only with ${name}'s rights in their home. The directories on the way should be ${name}'s`;
  return { ok: false, code: 'QRA_ERR_DEVICES_FILE', message: clean(message) };
}

async function main(): Promise<UserFileReply> {
  let req: UserFileRequest;
  try {
    req = parse(userFileRequest, JSON.parse(await readRequest()), 'request');
  } catch (e) {
    return { ok: false, code: 'QRA_ERR_INTERNAL', message: clean(`bad request to the user-file helper: ${(e as Error).message}`) };
  }
  // Fail closed if the privileges were not dropped as asked.
  const gid = process.getgid!();
  if (process.getuid!() !== req.user.uid || process.geteuid!() !== req.user.uid || process.getgroups!().some((g) => g !== gid)) {
    return { ok: false, code: 'QRA_ERR_INTERNAL', message: `the user-file helper is not running with only ${req.user.name}'s uid and group; nothing was done` };
  }
  try {
    if (req.op === 'read') return { ok: true, text: readDevicesFile(req.path, req.user).text };
    if (req.text === undefined) return { ok: false, code: 'QRA_ERR_INTERNAL', message: 'a write request without text' };
    ensureDevicesDir(req.path);
    writeDevicesText(req.path, req.text);
    return { ok: true };
  } catch (e) {
    return explain(e, req);
  }
}

process.stdout.write(JSON.stringify(await main()));
