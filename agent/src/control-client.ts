/**
 * The CLI's side of the control socket: one JSON request a line, answers one a line, bounded.
 * First it proves its uid to the agent with a file in the agent's proof directory
 * (control-server.ts explains the proof); root uses its own socket when there is one.
 */
import { closeSync, constants, fchmodSync, openSync, writeSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { type Check, QrauthError, asErrorCode, int, literal, object, parse, str } from '../../protocol/src/index.js';
import { CONTROL_MAX_LINE, credDirFor, rootSocketFor } from './control-server.js';

export { credDirFor } from './control-server.js';

const proveMsg = object({ ok: literal(true), event: literal('prove'), name: str({ min: 32, max: 32, pattern: /^[0-9a-f]{32}$/ }), token: str({ min: 43, max: 43, pattern: /^[A-Za-z0-9_-]{43}$/ }) });
const callerMsg = object({ ok: literal(true), event: literal('caller'), uid: int({ min: 0, max: 2 ** 32 }) });

export class ControlClient {
  private buf = '';
  private queue: unknown[] = [];
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private closedError: Error | null = null;

  private constructor(readonly sock: Socket) {
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

  /** Connect and prove who we are; root tries its own socket first (no flood on the shared one reaches it). */
  static async connect(path: string, timeoutMs = 3000): Promise<ControlClient> {
    if (process.geteuid?.() === 0) {
      try {
        return await ControlClient.connectAndProve(rootSocketFor(path), path, timeoutMs);
      } catch (e) {
        if (!(e instanceof QrauthError) || e.code !== 'QRA_ERR_AGENT_UNREACHABLE') throw e;
        /* an older agent without a root socket: the shared one */
      }
    }
    return ControlClient.connectAndProve(path, path, timeoutMs);
  }

  private static async connectAndProve(path: string, sharedPath: string, timeoutMs: number): Promise<ControlClient> {
    const c = await ControlClient.connectRaw(path, timeoutMs);
    try {
      const hello = c.reply(proveMsg, await c.nextWithin(timeoutMs, path), 'the agent');
      // O_EXCL|O_NOFOLLOW: never write through something already there. 0644 whatever the umask.
      const fd = openSync(join(credDirFor(sharedPath), hello.name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      try {
        fchmodSync(fd, 0o644);
        writeSync(fd, hello.token);
      } finally {
        closeSync(fd);
      }
      c.send({ op: 'proved' });
      c.reply(callerMsg, await c.nextWithin(timeoutMs, path), 'the agent');
      return c;
    } catch (e) {
      c.sock.destroy();
      if (e instanceof QrauthError) throw e;
      throw new QrauthError('QRA_ERR_UNAUTHENTICATED', `cannot prove who you are to the agent: ${(e as Error).message}`);
    }
  }

  /** An error reply becomes a QrauthError with its code; anything else must match `check`. */
  private reply<T>(check: Check<T>, v: unknown, what: string): T {
    const r = v as { ok?: unknown; code?: unknown; message?: unknown } | null;
    if (r && r.ok === false) {
      const code = asErrorCode(r.code, 'QRA_ERR_UNAUTHENTICATED');
      throw new QrauthError(code, typeof r.message === 'string' ? r.message.slice(0, 300) : 'the agent refused the connection');
    }
    return parse(check, v, what);
  }

  private async nextWithin(ms: number, path: string): Promise<unknown> {
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.next(),
        new Promise((_, reject) => {
          t = setTimeout(() => reject(new QrauthError('QRA_ERR_AGENT_UNREACHABLE', `no answer on ${path}`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  private static connectRaw(path: string, timeoutMs: number): Promise<ControlClient> {
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
