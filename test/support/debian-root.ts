/**
 * Debian roots made once with debootstrap and kept under /var/cache/qrauth-test, so later runs
 * reuse them: a sid root (test/login-sid.test.ts runs its sshd in a chroot) and a trixie root
 * (test/deb.test.ts boots it with systemd as PID 1). Several test processes may ask at once:
 * one builds, the others wait on a lock directory.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';

export const CACHE_DIR = '/var/cache/qrauth-test';

export interface DebianRootSpec {
  /** Directory name under CACHE_DIR, e.g. "sid-root". */
  name: string;
  suite: string;
  /** Packages debootstrap adds to minbase. */
  include: string[];
  /** A file that exists only in a finished root (checked before and after the lock). */
  marker: string;
  /** Extra steps on the new root before it is published (runs with the lock held). */
  finish?: (root: string) => void;
  /** Printed before a long first-time build, so a slow test run says why it is slow. */
  progress?: (line: string) => void;
}

function sleepSync(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The root's path, after making it if it is not there yet (minutes, from Debian's mirror). */
export function ensureDebianRoot(spec: DebianRootSpec): string {
  const root = `${CACHE_DIR}/${spec.name}`;
  const lock = `${root}.lock`;
  const done = () => existsSync(`${root}${spec.marker}`);
  if (done()) return root;
  mkdirSync(CACHE_DIR, { recursive: true });
  // mkdir is atomic: one test process builds, others wait.
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (done()) return root;
      sleepSync(2000);
    }
  }
  try {
    if (done()) return root;
    const tmp = `${root}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true }); // a half-made root from an older layout
    spec.progress?.(`debootstrap ${spec.suite} into ${tmp} (first run only; cached afterwards)`);
    execFileSync('debootstrap', ['--variant=minbase', `--include=${spec.include.join(',')}`, spec.suite, tmp, 'http://deb.debian.org/debian'], {
      stdio: 'pipe',
      timeout: 30 * 60_000,
    });
    spec.finish?.(tmp);
    renameSync(tmp, root);
    return root;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Run a command in a chroot of `root` (for building the root, before anything boots it). */
export function inChroot(root: string, argv: string[], timeoutMs = 20 * 60_000): string {
  return execFileSync('chroot', [root, ...argv], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' },
  });
}

/** Write a file inside a root being built. */
export function writeInRoot(root: string, path: string, text: string): void {
  writeFileSync(`${root}${path}`, text);
}
