/**
 * The agent's one Socket.IO link to the relay (namespace /host). It answers the relay's
 * requests (context, decision, enroll) through acks; everything it receives is validated here
 * before it reaches the session store. Reconnects with exponential backoff and jitter.
 */
import { EventEmitter } from 'node:events';
import { io, type Socket } from 'socket.io-client';
import {
  HOST_NAMESPACE,
  ID_PATTERN,
  decisionMessage,
  enrollMessage,
  isQrauthError,
  object,
  parse,
  str,
  type ContextAck,
  type DecisionAck,
  type EnrollAck,
  type EnrollMessage,
  type HostClientToServer,
  type HostServerToClient,
} from '../../protocol/src/index.js';
import { makeAuthHandshake } from '../../protocol/src/auth.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { HostKey } from './host-key.js';
import type { Logger } from './log.js';
import type { SessionStore } from './sessions.js';

export interface RelayLinkOptions {
  url: string;
  host: HostKey;
  sessions: SessionStore;
  log: Logger;
  /** Handles a phone's enrollment request (enrollment module); absent = refuse. */
  onEnroll?: (msg: EnrollMessage) => Promise<EnrollAck>;
  /** First reconnect delay. @default 500 */
  reconnectDelayMs?: number;
  /** Largest reconnect delay. @default 30000 */
  reconnectDelayMaxMs?: number;
}

const contextRequestFromRelay = object({ sid: str({ max: 22, min: 22, pattern: ID_PATTERN }) });

export class RelayLink extends EventEmitter {
  private socket: Socket<HostServerToClient, HostClientToServer>;
  private retryTimer: NodeJS.Timeout | null = null;
  private attempts = 0;
  private closed = false;
  readonly url: string;

  constructor(private readonly opts: RelayLinkOptions) {
    super();
    this.url = opts.url;
    const base = opts.reconnectDelayMs ?? 500;
    const max = opts.reconnectDelayMaxMs ?? 30_000;
    this.socket = io(`${opts.url}${HOST_NAMESPACE}`, {
      transports: ['websocket'],
      // A fresh signed handshake for every (re)connection: time and nonce change each time.
      auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'host', opts.host.seed) as unknown as Record<string, unknown>),
      reconnection: true,
      reconnectionDelay: base,
      reconnectionDelayMax: max,
      randomizationFactor: 0.5,
      timeout: 10_000,
      autoConnect: false,
    });
    this.socket.on('connect', () => {
      this.attempts = 0;
      opts.log('relay_link', { state: 'up', relay: opts.url });
      this.announce(true);
    });
    this.socket.on('disconnect', (reason) => {
      opts.log('relay_link', { state: 'down', relay: opts.url, reason });
      this.announce(false);
      // A server-side disconnect is not retried by socket.io-client on its own.
      if (reason === 'io server disconnect') this.scheduleRetry(base, max);
    });
    this.socket.on('connect_error', (err) => {
      opts.log('relay_link', { state: 'error', relay: opts.url, cause: err.message });
      // Refused by the relay's middleware: the client will not retry by itself.
      if (!this.socket.active) this.scheduleRetry(base, max);
    });
    this.socket.on('context', (req, ack) => this.answer(ack, () => this.onContext(req)));
    this.socket.on('decision', (msg, ack) => this.answer(ack, () => this.onDecision(msg)));
    this.socket.on('enroll', (msg, ack) => this.answerAsync(ack, () => this.onEnroll(msg)));
  }

  start(): void {
    this.socket.connect();
  }

  get up(): boolean {
    return this.socket.connected;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket.disconnect();
  }

  private scheduleRetry(base: number, max: number): void {
    if (this.closed || this.retryTimer) return;
    const delay = Math.min(max, base * 2 ** Math.min(this.attempts++, 16));
    const jittered = delay * (0.5 + Math.random());
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, jittered);
    this.retryTimer.unref();
  }

  /**
   * Tell listeners (the PAM logins waiting, systemd's status line) the link changed. Called from
   * socket.io's own event handling, where a throw would end the agent: a listener's failure is
   * logged and the others are still told.
   */
  private announce(up: boolean): void {
    for (const listener of this.listeners('change')) {
      try {
        (listener as (up: boolean) => void)(up);
      } catch (e) {
        this.opts.log('internal_error', { where: 'relay', handler: 'change', cause: e instanceof Error ? e.message : 'non-error thrown' });
      }
    }
  }

  /** Answer through the ack; a thrown error becomes an error ack (its code, or INTERNAL). */
  private answer(ack: unknown, fn: () => unknown): void {
    this.answerAsync(ack, async () => fn());
  }

  /**
   * Every message from the relay is answered here, and nothing it sends can end the agent: a
   * QrauthError (bad input, unknown session) is an error ack with its code; anything else is
   * logged as internal_error and answered QRA_ERR_INTERNAL; a failing ack is logged.
   */
  private answerAsync(ack: unknown, fn: () => Promise<unknown>): void {
    if (typeof ack !== 'function') return;
    const reply = ack as (r: unknown) => void;
    const failed = (handler: string) => (e: unknown) =>
      this.opts.log('internal_error', { where: 'relay', handler, cause: e instanceof Error ? `${e.name}: ${e.message}` : 'non-error thrown' });
    fn()
      .then(
        (r) => reply(r),
        (e: unknown) => {
          if (isQrauthError(e)) return reply({ ok: false, code: e.code, message: e.message });
          failed('message')(e);
          return reply({ ok: false, code: 'QRA_ERR_INTERNAL', message: 'internal error' });
        },
      )
      .catch(failed('ack'));
  }

  private onContext(req: unknown): ContextAck {
    const { sid } = parse(contextRequestFromRelay, req, 'context');
    return { ok: true, context: this.opts.sessions.contextFor(sid) };
  }

  private onDecision(raw: unknown): DecisionAck {
    const msg = parse(decisionMessage, raw, 'decision');
    const out = this.opts.sessions.applyDecision(msg);
    if (!out.ok) {
      this.opts.log('decision_rejected', { sid: msg.sid.slice(0, 8), device: msg.deviceId, code: out.code, cause: out.message });
      return out;
    }
    return { ok: true, result: out.result };
  }

  private async onEnroll(raw: unknown): Promise<EnrollAck> {
    const msg = parse(enrollMessage, raw, 'enroll');
    if (!this.opts.onEnroll) return { ok: false, code: 'QRA_ERR_ENROLL', message: 'no enrollment is open on this host' };
    return this.opts.onEnroll(msg);
  }
}
