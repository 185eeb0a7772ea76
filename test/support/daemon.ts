/**
 * Long-running programs for the production tests (installed agent and relay, relay nodes,
 * redis-server, the fake systemd): spawn, read what they print, wait for a line, stop by pid.
 * Plus `makeInstall`, which runs `make install` into a test's own directories.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { ROOT } from './system.js';
import { type OutputWatch, watchOutput } from './watch.js';

export interface Daemon extends OutputWatch {
  child: ChildProcess;
  readonly pid: number;
  /** SIGTERM (or the given signal), then SIGKILL after 5 s; resolves when it is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function startDaemon(argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; stdin?: 'pipe' | 'ignore' } = {}): Daemon {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, {
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd ?? ROOT,
  });
  const watch = watchOutput(child, argv[0]);
  return Object.assign(watch, {
    child,
    pid: child.pid ?? -1,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await watch.exited;
      clearTimeout(t);
    },
  });
}

export function run(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...args] = argv;
  return new Promise((resolve) => {
    execFile(cmd!, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `make install` with every directory given, into a test's own tree. `-o node_modules/.package-lock.json`
 * keeps make from running `npm ci` (the network) when package-lock.json is newer than node_modules.
 */
export async function makeInstall(vars: Record<string, string>, target = 'install'): Promise<string> {
  const r = await run(['make', '-s', '-o', 'node_modules/.package-lock.json', target, ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`make ${target} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

/** Poll until `fn` returns a truthy value (or throw after timeoutMs). */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs = 20_000, what = 'condition', everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
