/**
 * Run the real pamtester against a PAM service of ours: it loads pam_qrauth.so through libpam
 * exactly as sudo or login would, and talks to us on stdin/stdout.
 */
import { spawn } from 'node:child_process';
import { type OutputWatch, watchOutput } from './watch.js';

export interface PamtesterRun extends OutputWatch {
  type(text: string): void;
  kill(): void;
}

/**
 * `env` is added to pamtester's environment (e.g. LD_PRELOAD of test/support/pamtester_preload.c);
 * `items` are PAM items pamtester sets before authenticating (`ruser=mallory`, as su sets it).
 */
export function runPamtester(service: string, user: string, opts: { valgrind?: string[]; env?: NodeJS.ProcessEnv; items?: string[] } = {}): PamtesterRun {
  // stdbuf: misc_conv prints info messages with stdio, which a pipe would hold back.
  const items = (opts.items ?? []).flatMap((i) => ['-I', i]);
  const [cmd, ...args] = ['stdbuf', '-o0', '-e0', ...(opts.valgrind ?? []), 'pamtester', '-v', ...items, service, user, 'authenticate'];
  const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LANG: 'C.UTF-8', ...opts.env } });
  const watch = watchOutput(child, 'pamtester');
  return Object.assign(watch, {
    type(text: string) {
      child.stdin.write(text);
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  });
}
