/**
 * Watch a child process's output the way a person reads a screen: wait until something
 * appears, or fail with everything that was printed. Shared by the pty, pamtester and daemon helpers.
 */
import type { ChildProcess } from 'node:child_process';

export interface OutputWatch {
  readonly output: string;
  /** The first match in the output from `from` (an offset into it) on. */
  waitFor(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function watchOutput(child: ChildProcess, what = 'process'): OutputWatch {
  let output = '';
  let done = false;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  const onData = (d: string) => {
    output += d;
    notify();
  };
  // Decode per stream, not per chunk: a chunk can end inside a multi-byte character (a half
  // block is 3 bytes), which per-chunk decoding turns into U+FFFD and breaks the QR's lines.
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  // 'exit' can come before the last output is read (found with 200 pamtesters at once, whose
  // final lines were missing): finish on 'close', when stdout and stderr are drained, or shortly
  // after 'exit' if a grandchild keeps the pipes open.
  const exited = new Promise<number | null>((resolve) => {
    let code: number | null = null;
    const finish = () => {
      if (done) return;
      done = true;
      notify();
      resolve(code);
    };
    child.on('exit', (c) => {
      code = c;
      setTimeout(finish, 1000).unref();
    });
    child.on('close', (c) => {
      code = c ?? code;
      finish();
    });
    child.on('error', finish); // could not be started at all
  });
  return {
    get output() {
      return output;
    },
    exited,
    waitFor(pattern, timeoutMs = 20_000, from = 0) {
      return new Promise((resolve, reject) => {
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        const check = () => {
          const m = output.slice(from).match(pattern);
          if (m) {
            cleanup();
            resolve(m);
          } else if (done) {
            cleanup();
            reject(new Error(`${what} exited before ${pattern} appeared; output:\n${output.slice(-3000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${what}: timed out after ${timeoutMs} ms waiting for ${pattern}; output:\n${output.slice(-3000)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
