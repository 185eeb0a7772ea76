/**
 * A real OpenSSH server on 127.0.0.1 for tests, with its own config and host key, using a PAM
 * service of ours: sshd takes its PAM service name from the name it is started under, so it is
 * started through a symlink named for the service.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export interface Sshd {
  port: number;
  service: string;
  /** sshd's own log (-e), for assertions and failure messages. */
  readonly log: string;
  /** The listener's pid (or chroot's, which execs it), for a last synchronous kill at exit. */
  readonly pid: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export async function startSshd(opts: { dir: string; service: string; sshdPath?: string; extraConfig?: string[]; allowUsers?: string; fixedPort?: number; chroot?: string }): Promise<Sshd> {
  const sshdPath = opts.sshdPath ?? '/usr/sbin/sshd';
  // With a chroot, opts.dir lies inside it; sshd sees paths relative to the chroot's root.
  const root = opts.chroot ?? '';
  if (root && !opts.dir.startsWith(`${root}/`)) throw new Error('the sshd dir must be inside the chroot');
  const inner = (p: string) => (root ? p.slice(root.length) : p);
  mkdirSync(`${root}/run/sshd`, { recursive: true, mode: 0o755 });
  const keyPath = join(opts.dir, 'ssh_host_ed25519_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyPath]);
  const bin = join(opts.dir, opts.service);
  symlinkSync(sshdPath, bin);
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = opts.fixedPort ?? (await freePort());
    const cfg = join(opts.dir, 'sshd_config');
    writeFileSync(
      cfg,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${inner(keyPath)}`,
        `PidFile ${inner(join(opts.dir, 'sshd.pid'))}`,
        'UsePAM yes',
        'KbdInteractiveAuthentication yes',
        'PasswordAuthentication no',
        'PubkeyAuthentication no',
        'AuthenticationMethods keyboard-interactive',
        'PermitRootLogin no',
        `AllowUsers ${opts.allowUsers ?? 'qrtest-*'}`,
        'LoginGraceTime 120',
        'MaxStartups 200:30:400',
        'UseDNS no',
        'PrintMotd no',
        'PrintLastLog no',
        'StrictModes no',
        'LogLevel VERBOSE',
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    const argv = [inner(bin), '-D', '-e', '-f', inner(cfg)];
    const child: ChildProcess = root
      ? spawn('chroot', [root, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      : spawn(bin, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let log = '';
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    const ready = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 10_000);
      const check = () => {
        if (/Server listening on 127\.0\.0\.1 port/.test(log)) {
          clearTimeout(t);
          resolve(true);
        }
      };
      child.stderr!.on('data', check);
      child.on('exit', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ready) {
      return {
        port,
        service: opts.service,
        pid: child.pid!,
        get log() {
          return log;
        },
        stop: () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      };
    }
    lastErr = new Error(`sshd did not start:\n${log}`);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  throw lastErr;
}

export function sshArgs(port: number, user: string, command: string): string[] {
  return [
    'ssh',
    '-F', '/dev/null',
    '-p', String(port),
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    // INFO, the default users have: OpenSSH >= 10.3 shows PAM info messages as banners, which
    // the client prints only at INFO and above.
    '-o', 'LogLevel=INFO',
    '-o', 'PreferredAuthentications=keyboard-interactive',
    '-o', 'PubkeyAuthentication=no',
    '-o', 'NumberOfPasswordPrompts=1',
    '-o', 'ConnectTimeout=10',
    `${user}@127.0.0.1`,
    command,
  ];
}

/**
 * ssh options (no user or command) for a login that offers the key in `keyFile` first, then
 * keyboard-interactive for pam_qrauth: what a lease is granted to and recognised by.
 */
export function sshKeyArgs(port: number, keyFile: string): string[] {
  return [
    '-F', '/dev/null',
    '-p', String(port),
    '-i', keyFile,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=INFO',
    '-o', 'PreferredAuthentications=publickey,keyboard-interactive',
    '-o', 'NumberOfPasswordPrompts=1',
    '-o', 'ConnectTimeout=10',
  ];
}

/** `ssh -T` with the key in `keyFile` and stdin closed (under a lease it must finish with no prompt): exit code and all it printed. */
export function sshNoTty(port: number, keyFile: string, user: string, command: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile('ssh', [...sshKeyArgs(port, keyFile), '-T', `${user}@127.0.0.1`, command], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out: `${stdout}${stderr}` });
    });
    child.stdin?.end();
  });
}
