/**
 * The CLI's side of the control socket: one JSON request a line, answers one a line, bounded.
 */
import { connect, type Socket } from 'node:net';
import { QrauthError } from '../../protocol/src/index.js';
import { CONTROL_MAX_LINE } from './control-server.js';

export class ControlClient {
  private buf = '';
  private queue: unknown[] = [];
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private closedError: Error | null = null;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buf += chunk;
      if (this.buf.length > CONTROL_MAX_LINE) {
        this.fail(new QrauthError('QRA_ERR_INVALID_INPUT', 'the agent sent an overlong line'));
        return;
      }
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          this.fail(new QrauthError('QRA_ERR_INVALID_INPUT', 'the agent sent something that is not JSON'));
          return;
        }
        const w = this.waiters.shift();
        if (w) w.resolve(msg);
        else this.queue.push(msg);
      }
    });
    sock.on('close', () => this.fail(new QrauthError('QRA_ERR_AGENT_UNREACHABLE', 'the agent closed the connection')));
    sock.on('error', (e) => this.fail(new QrauthError('QRA_ERR_AGENT_UNREACHABLE', e.message)));
  }

  private fail(e: Error) {
    this.closedError ??= e;
    for (const w of this.waiters.splice(0)) w.reject(this.closedError);
    this.sock.destroy();
  }

  static connect(path: string, timeoutMs = 3000): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      const t = setTimeout(() => {
        s.destroy();
        reject(new QrauthError('QRA_ERR_AGENT_UNREACHABLE', `no answer on ${path}`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(new ControlClient(s));
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(t);
        reject(new QrauthError('QRA_ERR_AGENT_UNREACHABLE', `cannot connect to ${path} (${e.code ?? e.message})`));
      });
    });
  }

  send(req: unknown): void {
    this.sock.write(`${JSON.stringify(req)}\n`);
  }

  /** The next message from the agent. */
  next(): Promise<unknown> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async request(req: unknown): Promise<unknown> {
    this.send(req);
    return this.next();
  }

  close(): void {
    this.sock.end();
  }
}
