/**
 * A Debian 13 (trixie) root that boots with systemd as PID 1 under systemd-nspawn, cached like the
 * sid root. It holds what a plain trixie server has (systemd, dbus, sshd, sudo), not qrauth's own
 * dependencies: nodejs is only downloaded into apt's cache, with fresh package lists, so that
 * `apt-get install ./qrauth_*.deb` resolves and installs it from Debian without the network.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, until } from './daemon.js';
import { ensureDebianRoot, inChroot, writeInRoot } from './debian-root.js';

const READY = '/var/lib/qrauth-test-root-ready';

export function ensureTrixieRoot(progress: (line: string) => void = () => {}): string {
  return ensureDebianRoot({
    name: 'trixie-root',
    suite: 'trixie',
    include: ['systemd', 'systemd-sysv', 'dbus', 'openssh-server', 'sudo', 'libpam-modules'],
    marker: READY,
    progress,
    finish(root) {
      progress('trixie root: apt-get update, then download nodejs into apt\'s cache');
      writeInRoot(root, '/etc/apt/sources.list', 'deb http://deb.debian.org/debian trixie main\n');
      inChroot(root, ['apt-get', 'update', '-qq']);
      inChroot(root, ['apt-get', 'install', '-y', '-qq', '--download-only', 'nodejs']);
      // Nothing in the booted root listens on the host's network (nspawn shares it) until a test
      // says where: sshd gets its port from the test's drop-in.
      mkdirSync(`${root}/etc/ssh/sshd_config.d`, { recursive: true });
      inChroot(root, ['systemctl', 'disable', 'ssh.service']);
      // No login prompt on the console the test reads.
      inChroot(root, ['systemctl', 'mask', 'console-getty.service', 'getty@.service']);
      writeInRoot(root, READY, 'made by test/support/trixie-root.ts\n');
    },
  });
}

/** A cached root booted with systemd as PID 1, on a throwaway overlay (the cache stays as it was). */
export interface BootedRoot {
  /** The merged root as the host sees it; `changes` holds only what the run wrote. */
  dir: string;
  changes: string;
  /** The container's PID 1, as a host pid. */
  leader: number;
  /** What its console printed (boot messages), for failure output. */
  readonly console: string;
  /** argv that runs `argv` inside the container (all its namespaces), e.g. for runInPty. */
  cmd(argv: string[]): string[];
  run(argv: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A shell script inside; throws with its output unless it exits 0. */
  sh(script: string, timeoutMs?: number): Promise<string>;
  /** A path inside the running container, reachable from the host (sockets included). */
  path(p: string): string;
  stop(): Promise<void>;
}

const INSIDE_ENV = ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8', 'DEBIAN_FRONTEND=noninteractive', 'TERM=xterm'];

/** The container's PID 1: nspawn's child whose pid in its own namespace is 1. */
function findLeader(nspawnPid: number): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (new RegExp(`^PPid:\\s+${nspawnPid}$`, 'm').test(status) && /^NSpid:\s+\d+\s+1$/m.test(status)) return Number(entry);
    } catch {
      /* gone meanwhile */
    }
  }
  return null;
}

/**
 * Boot `root` under `systemd-nspawn -b --register=no --keep-unit` (no machined needed; it shares
 * the host's network, so whatever listens inside must use the test's own loopback ports).
 * Commands reach it with nsenter through the leader pid. `prepare` writes files before boot.
 */
export async function bootRoot(root: string, opts: { work: string; name: string; prepare?: (dir: string) => void }): Promise<BootedRoot> {
  const dir = join(opts.work, 'merged');
  const changes = join(opts.work, 'upper');
  for (const d of [dir, changes, join(opts.work, 'ovl-work')]) mkdirSync(d, { recursive: true });
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${root},upperdir=${changes},workdir=${join(opts.work, 'ovl-work')}`, dir]);
  let child: ChildProcess | null = null;
  let output = '';
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      // nspawn turns SIGTERM into an orderly poweroff of the container.
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(timer);
    }
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]);
    }
    rmSync(opts.work, { recursive: true, force: true });
  };
  try {
    opts.prepare?.(dir);
    child = spawn('systemd-nspawn', ['-b', '--register=no', '--keep-unit', '--console=read-only', '-M', opts.name, '-D', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const nspawn = child;
    const leader = await until(() => {
      if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}:\n${output.slice(-3000)}`);
      return findLeader(nspawn.pid!);
    }, 30_000, 'the container\'s PID 1');
    const cmd = (argv: string[]) => ['nsenter', '-t', String(leader), '-a', 'env', '-i', ...INSIDE_ENV, ...argv];
    const runInside = (argv: string[], timeoutMs = 120_000) => run(cmd(argv), { timeoutMs });
    const booted: BootedRoot = {
      dir,
      changes,
      leader,
      get console() {
        return output;
      },
      cmd,
      run: runInside,
      async sh(script, timeoutMs) {
        const r = await runInside(['sh', '-ec', script], timeoutMs);
        if (r.code !== 0) throw new Error(`in the container, exit ${r.code}: ${script}\n${r.stdout}\n${r.stderr}`);
        return r.stdout;
      },
      path: (p) => `/proc/${leader}/root${p}`,
      stop,
    };
    // is-system-running --wait returns once boot is over ("running", or "degraded" if a unit failed).
    const state = await until(async () => {
      const r = await runInside(['systemctl', 'is-system-running', '--wait'], 120_000);
      return /^(running|degraded)$/m.test(r.stdout) ? r.stdout.trim() : null;
    }, 120_000, 'the container to finish booting', 500);
    if (state !== 'running') throw new Error(`the container booted ${state}: ${(await runInside(['systemctl', '--failed', '--no-legend'])).stdout}`);
    return booted;
  } catch (e) {
    await stop();
    throw e;
  }
}
