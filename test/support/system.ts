/**
 * Real system pieces for end-to-end tests: Unix users, PAM service files, temp dirs.
 * Tests run as root (CI does); each test file names its PAM services uniquely and removes them.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const MODULE_PATH = join(ROOT, 'pam_qrauth', 'pam_qrauth.so');

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Make a Unix user (idempotent) with a home and /bin/sh. */
export function ensureUser(name: string): { uid: number; gid: number; home: string } {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('useradd', ['-m', '-s', '/bin/sh', name], { stdio: 'pipe' });
    } catch (e) {
      // Two test files may race to create the same user.
      execFileSync('id', ['-u', name], { stdio: 'ignore' });
      void e;
    }
  }
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  const home = execFileSync('getent', ['passwd', name]).toString().split(':')[5]!;
  return { uid, gid, home };
}

export function tempDir(prefix = 'qrauth-test-'): { path: string; remove(): void } {
  // /tmp keeps socket paths short (sun_path is 108 bytes).
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, 0o755);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Install /etc/pam.d/<service> for the duration of a test file. */
export function installPamService(service: string, authLines: string[]): { remove(): void } {
  const path = join('/etc/pam.d', service);
  writeFileSync(
    path,
    [
      '# written by qrauth tests; removed when they finish',
      ...authLines,
      'account required pam_permit.so',
      'session required pam_permit.so',
      'password required pam_deny.so',
      '',
    ].join('\n'),
  );
  return {
    remove: () => {
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
    },
  };
}

let namesMade = 0;

/**
 * A name no other test process uses at the same time (PAM services, sshd service names): the
 * prefix, this process's pid and a counter. Deterministic within a run, unlike a random suffix.
 */
export function randomName(prefix: string): string {
  namesMade += 1;
  return `${prefix}${process.pid.toString(36)}${namesMade.toString(36)}`;
}
