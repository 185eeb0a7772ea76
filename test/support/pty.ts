/**
 * Run a program on a real pseudo-terminal (util-linux `script`), the way a person would:
 * read what it prints, type into it, wait for it to exit. Used to drive the real `ssh` client.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface PtyRun {
  child: ChildProcess;
  /** Everything printed so far (CRLF as the terminal sent it). */
  readonly output: string;
  /** Resolve when the output matches, reject after timeoutMs with the output in the message. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  type(text: string): void;
  /** Resolve with the exit code (or null if killed). */
  exited: Promise<number | null>;
  kill(): void;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function runInPty(argv: string[], env: NodeJS.ProcessEnv = {}): PtyRun {
  const cmd = argv.map(shellQuote).join(' ');
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
    env: { ...process.env, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', TERM: 'xterm', COLUMNS: '80', LINES: '24', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    output += d.toString('utf8');
    for (const l of [...listeners]) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => {
    done = true;
    for (const l of [...listeners]) l();
  });
  return {
    child,
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
            reject(new Error(`process exited before ${pattern} appeared; output:\n${output}`));
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
      child.stdin!.write(text);
    },
    exited,
    kill() {
      if (child.exitCode === null && child.pid) child.kill('SIGKILL');
    },
  };
}
