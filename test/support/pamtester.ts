/**
 * Run the real pamtester against a PAM service of ours: it loads pam_qrauth.so through libpam
 * exactly as sudo or login would, and talks to us on stdin/stdout.
 */
import { spawn } from 'node:child_process';

export interface PamtesterRun {
  readonly output: string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  type(text: string): void;
  exited: Promise<number | null>;
  kill(): void;
}

export function runPamtester(service: string, user: string, opts: { valgrind?: string[] } = {}): PamtesterRun {
  // stdbuf: misc_conv prints info messages with stdio, which a pipe would hold back.
  const [cmd, ...args] = ['stdbuf', '-o0', '-e0', ...(opts.valgrind ?? []), 'pamtester', '-v', service, user, 'authenticate'];
  const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LANG: 'C.UTF-8' } });
  let output = '';
  const listeners = new Set<() => void>();
  let done = false;
  const onData = (d: Buffer) => {
    output += d.toString('utf8');
    for (const l of [...listeners]) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      done = true;
      for (const l of [...listeners]) l();
      resolve(code);
    }),
  );
  return {
    get output() {
      return output;
    },
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = output.match(pattern);
          if (m) {
            cleanup();
            resolve(m);
          } else if (done) {
            cleanup();
            reject(new Error(`pamtester exited before ${pattern}; output:\n${output}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}; output:\n${output}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    type(text) {
      child.stdin.write(text);
    },
    exited,
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
