/**
 * Run a program on a real pseudo-terminal (util-linux `script`), the way a person would:
 * read what it prints, type into it, wait for it to exit. Used to drive the real `ssh` client.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type OutputWatch, watchOutput } from './watch.js';

export interface PtyRun extends OutputWatch {
  child: ChildProcess;
  type(text: string): void;
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
  const watch = watchOutput(child, argv[0]);
  return Object.assign(watch, {
    child,
    type(text: string) {
      child.stdin!.write(text);
    },
    kill() {
      if (child.exitCode === null && child.pid) child.kill('SIGKILL');
    },
  });
}

let markersMade = 0;
/**
 * A word for a remote `echo`: seeing it in the output shows the command ran. From a counter, not
 * randomness, so a failed run shows the same words when replayed.
 */
export function nextMarker(prefix: string): string {
  markersMade += 1;
  return `${prefix}_${markersMade}`;
}
