/**
 * A PAM-side client of the agent socket written in TS, for agent tests that do not need the C
 * module (the C module has its own tests, and the end-to-end tests use it for real).
 */
import { connect, type Socket } from 'node:net';
import { FrameDecoder, encodeFrame, type FrameMsg } from '../../protocol/src/index.js';

export class PamClient {
  private decoder = new FrameDecoder();
  private queue: FrameMsg[] = [];
  private waiters: Array<(m: FrameMsg | null) => void> = [];
  private ended = false;

  private constructor(readonly sock: Socket) {
    sock.on('data', (d) => {
      for (const m of this.decoder.push(d)) this.deliver(m);
    });
    sock.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
    sock.on('error', () => {});
  }

  static connect(path: string): Promise<PamClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new PamClient(s)));
      s.once('error', reject);
    });
  }

  private deliver(m: FrameMsg) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.queue.push(m);
  }

  send(m: FrameMsg): void {
    this.sock.write(encodeFrame(m));
  }

  /** Next message, or null when the agent closed the connection. */
  next(timeoutMs = 10_000): Promise<FrameMsg | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no message from the agent in time')), timeoutMs);
      this.waiters.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  }

  /** Resolves when the agent closes the connection. */
  closed(): Promise<void> {
    return this.ended ? Promise.resolve() : new Promise((r) => this.sock.once('close', () => r()));
  }

  close(): void {
    this.sock.destroy();
  }
}
