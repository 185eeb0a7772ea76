/**
 * The PAM side of the agent: /run/qrauth.sock, one connection per login attempt, framed
 * binary (docs/protocol.md §1). The session lives as long as the connection: if sshd drops
 * the login, the session is cancelled.
 */
import { type Server, type Socket, createServer } from 'node:net';
import { chmodSync, unlinkSync, lstatSync } from 'node:fs';
import { PamConnection, type PamLoginDeps } from './pam-connection.js';

export { FRAME_TIMEOUT_MS, PROMPT_TEXT, INFO_TEXT, badBegin } from './pam-connection.js';

export interface PamServerDeps extends PamLoginDeps {
  hostId: string;
  /** Notified when the relay link state changes (to answer WAIT with OFFLINE at once). */
  onRelayChange(cb: (up: boolean) => void): () => void;
  maxConnections: number;
  /** Connections whose BEGIN names one PAM_RUSER (a caller of su or sudo) at once; more get ERROR. */
  maxConnectionsPerCaller?: number;
}

export class PamServer {
  readonly server: Server;
  private connections = new Set<Socket>();
  /**
   * Logins blocked in WAIT, told when the relay link changes. One subscription for all of them:
   * one listener a login made every verdict an O(pending) removeListener (bench/, benchmark 5).
   */
  private readonly relayWatchers = new Set<(up: boolean) => void>();
  private readonly unsubscribeRelay: () => void;

  constructor(private readonly deps: PamServerDeps) {
    this.server = createServer({ allowHalfOpen: false }, (sock) => this.onConnection(sock));
    this.server.maxConnections = deps.maxConnections;
    // After listen(), an accept that fails (EMFILE) is an 'error' event: with no listener it
    // would end the agent. The listening socket stays; the next accept may work.
    this.server.on('error', (e: NodeJS.ErrnoException) => {
      if (this.server.listening) deps.log('pam_socket_error', { cause: e.code ?? e.message });
    });
    this.unsubscribeRelay = deps.onRelayChange((up) => {
      for (const w of [...this.relayWatchers]) w(up);
    });
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Listen on a path (mode 0600), or on an inherited fd from systemd socket activation. */
  async listen(target: { path: string } | { fd: number }): Promise<void> {
    if ('path' in target) {
      try {
        if (lstatSync(target.path).isSocket()) unlinkSync(target.path);
      } catch {
        /* nothing there */
      }
      const old = process.umask(0o177);
      try {
        await new Promise<void>((resolve, reject) => {
          this.server.once('error', reject);
          this.server.listen(target.path, () => {
            this.server.off('error', reject);
            resolve();
          });
        });
      } finally {
        process.umask(old);
      }
      chmodSync(target.path, 0o600);
    } else {
      await new Promise<void>((resolve) => this.server.listen({ fd: target.fd }, resolve));
    }
  }

  private closing: Promise<void> | null = null;

  /**
   * Stop accepting at once. Under socket activation the listening socket is systemd's too, so
   * logins that arrive from now on wait in its backlog for the next agent instead of being
   * accepted here and dropped by the shutdown (pam_qrauth sends its BEGIN once more when a
   * connection closes unanswered).
   */
  stopAccepting(): void {
    this.closing ??= new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async close(): Promise<void> {
    this.stopAccepting();
    this.unsubscribeRelay();
    for (const c of this.connections) c.destroy();
    await this.closing;
  }

  /**
   * Waiting logins by caller (PAM_RUSER, which su and sudo set to the user who ran them): one
   * local user starting thousands of `su` and leaving each at its QR would otherwise hold every
   * connection the agent takes, sshd's logins included, until each expired.
   */
  private readonly byCaller = new Map<string, number>();

  private admitCaller(ruser: string): (() => void) | null {
    const n = this.byCaller.get(ruser) ?? 0;
    if (n >= (this.deps.maxConnectionsPerCaller ?? 64)) return null;
    this.byCaller.set(ruser, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.byCaller.get(ruser) ?? 1) - 1;
      if (left > 0) this.byCaller.set(ruser, left);
      else this.byCaller.delete(ruser);
    };
  }

  /** One login: its state and handlers live in a PamConnection (pam-connection.ts). */
  private onConnection(sock: Socket): void {
    this.connections.add(sock);
    try {
      new PamConnection(sock, this.deps, {
        watchRelay: (cb) => {
          this.relayWatchers.add(cb);
          return () => this.relayWatchers.delete(cb);
        },
        closed: () => this.connections.delete(sock),
        stopping: () => this.closing !== null,
        admitCaller: (ruser) => this.admitCaller(ruser),
      });
    } catch (e) {
      this.deps.log('internal_error', { where: 'pam', handler: 'connection', cause: e instanceof Error ? e.message : 'non-error thrown' });
      this.connections.delete(sock);
      sock.destroy();
    }
  }
}
