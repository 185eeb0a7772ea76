/**
 * A Debian sid root with OpenSSH ≥ 10.3 (which shows PAM info messages at once), made once with
 * debootstrap and kept under /var/cache so later runs reuse it. Tests run its sshd in a chroot
 * with our module copied in and the agent's socket inside the chroot.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';

export const SID_ROOT = '/var/cache/qrauth-test/sid-root';
const LOCK = '/var/cache/qrauth-test/sid-root.lock';

function sleepSync(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Make the sid root if it is not there yet (about 1-3 minutes, from Debian's mirror). */
export function ensureSidRoot(): string {
  if (existsSync(`${SID_ROOT}/usr/sbin/sshd`)) return SID_ROOT;
  mkdirSync('/var/cache/qrauth-test', { recursive: true });
  // mkdir is atomic: one test process builds, others wait.
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      if (existsSync(`${SID_ROOT}/usr/sbin/sshd`)) return SID_ROOT;
      sleepSync(2000);
    }
  }
  try {
    if (existsSync(`${SID_ROOT}/usr/sbin/sshd`)) return SID_ROOT;
    const tmp = `${SID_ROOT}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    execFileSync('debootstrap', ['--variant=minbase', '--include=openssh-server,libpam-modules', 'sid', tmp, 'http://deb.debian.org/debian'], {
      stdio: 'pipe',
      timeout: 15 * 60_000,
    });
    renameSync(tmp, SID_ROOT);
    return SID_ROOT;
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

export function sidSshdVersion(root = SID_ROOT): string {
  const r = spawnSync('chroot', [root, '/usr/sbin/sshd', '-V'], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`;
}
