/**
 * Who a user is (uid, home). The PAM module sends uid and home from getpwnam(3) in BEGIN, so
 * NSS users (LDAP, sssd) work without Node doing NSS; the CLI and older modules fall back to
 * /etc/passwd.
 */
import { readFileSync } from 'node:fs';
import { QrauthError } from '../../protocol/src/index.js';

export interface UserInfo {
  name: string;
  uid: number;
  home: string;
}

export const USER_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,255}$/;

/** A passwd entry; `gid` is null when the line's group id is not a non-negative integer. */
export interface PasswdUser extends UserInfo {
  gid: number | null;
}

export function lookupUserInPasswd(name: string, passwdPath = '/etc/passwd'): PasswdUser | null {
  if (!USER_NAME_PATTERN.test(name)) return null;
  let text: string;
  try {
    text = readFileSync(passwdPath, 'utf8');
  } catch (e) {
    throw new QrauthError('QRA_ERR_INTERNAL', `cannot read ${passwdPath}: ${(e as Error).message}`);
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && f[0] === name) {
      const uid = Number(f[2]);
      if (!Number.isSafeInteger(uid) || uid < 0) return null;
      const gid = Number(f[3]);
      return { name, uid, gid: Number.isSafeInteger(gid) && gid >= 0 ? gid : null, home: f[5]! };
    }
  }
  return null;
}
