/**
 * A Debian sid root with OpenSSH ≥ 10.3 (which shows PAM info messages at once), made once with
 * debootstrap and kept under /var/cache so later runs reuse it (test/support/debian-root.ts).
 * Tests run its sshd in a chroot with our module copied in and the agent's socket inside the chroot.
 */
import { spawnSync } from 'node:child_process';
import { CACHE_DIR, ensureDebianRoot } from './debian-root.js';

export const SID_ROOT = `${CACHE_DIR}/sid-root`;

/** Make the sid root if it is not there yet (about 1-3 minutes, from Debian's mirror). */
export function ensureSidRoot(): string {
  return ensureDebianRoot({ name: 'sid-root', suite: 'sid', include: ['openssh-server', 'libpam-modules'], marker: '/usr/sbin/sshd' });
}

export function sidSshdVersion(root = SID_ROOT): string {
  const r = spawnSync('chroot', [root, '/usr/sbin/sshd', '-V'], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`;
}
