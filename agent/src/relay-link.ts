/**
 * The agent's one Socket.IO link to the relay (namespace /host). It answers the relay's
 * requests (context, decision, enroll) through acks; everything it receives is validated here
 * before it reaches the session store.
 *
 * Failover without a balancer: given several relay URLs (preferred first) it keeps ONE live link,
 * moves to the next URL when the link fails (backoff with jitter: a quick pass over the list, then
 * doubling per full pass), and while on another relay it probes the preferred one's /healthz and
 * moves back when it answers, opening the new link before closing the old so no request is lost.
 */
import { EventEmitter } from 'node:events';
import { io, type Socket } from 'socket.io-client';
import {
  HOST_NAMESPACE,
  ID_PATTERN,
  MAX_MESSAGE_BYTES,
  decisionMessage,
  enrollMessage,
  isQrauthError,
  leaseRevokeMessage,
  object,
  parse,
  str,
  type ContextAck,
  type DecisionAck,
  type EnrollAck,
  type EnrollMessage,
  type LeaseRevokeAck,
  type LeaseRevokeMessage,
  type HostClientToServer,
  type HostServerToClient,
} from '../../protocol/src/index.js';
import { makeAuthHandshake } from '../../protocol/src/auth.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { HostKey } from './host-key.js';
import type { LogFields, Logger } from './log.js';
import type { SessionStore } from './sessions.js';

export interface RelayLinkOptions {
  /** Relay base URLs, preferred first (config relayUrl). */
  urls: readonly string[];
  host: HostKey;
  sessions: SessionStore;
  log: Logger;
  /** Handles a phone's enrollment request (enrollment module); absent = refuse. */
  onEnroll?: (msg: EnrollMessage) => Promise<EnrollAck>;
  /** A phone ends its own leases (leases.ts PhoneLeaseRevokes); absent = none to end. */
  onRevokeLeases?: (msg: LeaseRevokeMessage) => Promise<LeaseRevokeAck>;
  /** First reconnect delay. @default 500 */
  reconnectDelayMs?: number;
  /** Largest reconnect delay. @default 30000 */
  reconnectDelayMaxMs?: number;
  /** While on another relay: how often to ask the preferred one's /healthz (jittered). @default 30000 */
  preferredProbeMs?: number;
}

type HostSocket = Socket<HostServerToClient, HostClientToServer>;

/**
 * Largest WebSocket message the agent takes from the relay (ws's default is 100 MiB). The relay
 * sends only phone messages it has parsed against protocol/ schemas, each at most
 * MAX_MESSAGE_BYTES (its own limit); the largest, a decision carrying a passkey assertion, is
 * about 3.4 KB at the schemas' maxima, an enrollment with a passkey about 2 KB. Sixteen times the
 * relay's limit leaves room for the protocol to grow and for relays of other versions, since a
 * legitimate message over it would take the whole link down, not just fail itself, while one
 * frame still costs the agent at most 128 KiB.
 */
export const RELAY_MESSAGE_MAX_BYTES = 16 * MAX_MESSAGE_BYTES;

const contextRequestFromRelay = object({ sid: str({ max: 22, min: 22, pattern: ID_PATTERN }) });

/**
 * Why ws dropped the link, from socket.io's error or disconnect description (engine.io's
 * TransportError around ws's ErrorEvent): its message and stable code, e.g. a frame over
 * RELAY_MESSAGE_MAX_BYTES or a compressed one. Never the frame's bytes. Empty for other causes.
 */
function wsFailure(description: unknown): LogFields {
  const err = (description as { description?: { error?: unknown } } | null | undefined)?.description?.error;
  if (!(err instanceof Error)) return {};
  const code = (err as { code?: unknown }).code;
  return {
    cause: err.message,
    code: typeof code === 'string' ? code : undefined,
    limit: code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? RELAY_MESSAGE_MAX_BYTES : undefined,
  };
}

/** A response body as text, at most `max` bytes (a relay's /healthz is a line; anything longer is not one). */
async function readCapped(res: Response, max: number): Promise<string | null> {
  const reader = res.body?.getReader();
  if (!reader) return null;
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A relay's /healthz (3 s, no redirects, 4 KiB at most): whether it answered OK, and whether it
 * says it checks which relay a handshake is signed for (undefined: it does not say: a relay from
 * before the field, or a balancer answering /healthz itself). Never throws.
 */
async function askHealth(url: string): Promise<{ ok: boolean; bound?: boolean }> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000), redirect: 'error' });
    if (!res.ok) {
      await res.body?.cancel();
      return { ok: false };
    }
    const text = await readCapped(res, 4096);
    let body: unknown = null;
    try {
      body = text === null ? null : JSON.parse(text);
    } catch {
      /* not JSON: healthy, says nothing */
    }
    const field = body !== null && typeof body === 'object' ? (body as { boundHandshakes?: unknown }).boundHandshakes : undefined;
    return typeof field === 'boolean' ? { ok: true, bound: field } : { ok: true };
  } catch {
    return { ok: false };
  }
}

export class RelayLink extends EventEmitter {
  private socket: HostSocket | null = null;
  /** A link to the preferred relay being opened while the current one still serves. */
  private returning: HostSocket | null = null;
  private index = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  /** Failed attempts since the last good connection, over all URLs. */
  private attempts = 0;
  private closed = false;
  /** Per relay URL: whether its /healthz says it checks which relay a handshake is for (unset: not known yet). */
  private readonly binding = new Map<string, boolean>();
  private readonly base: number;
  private readonly max: number;
  private readonly probeMs: number;

  constructor(private readonly opts: RelayLinkOptions) {
    super();
    if (opts.urls.length === 0) throw new RangeError('RelayLink needs at least one relay URL');
    this.base = opts.reconnectDelayMs ?? 500;
    this.max = opts.reconnectDelayMaxMs ?? 30_000;
    this.probeMs = opts.preferredProbeMs ?? 30_000;
  }

  /** The relay this link is on, or trying to reach. */
  get url(): string {
    return this.opts.urls[this.index]!;
  }

  /** Every configured relay, preferred first. */
  get urls(): readonly string[] {
    return this.opts.urls;
  }

  /**
   * Whether the relay at `url` checks which relay a handshake was signed for (it runs with
   * --public-url), as its /healthz last said; undefined when not known (not asked yet, no
   * answer, or a relay from before the field).
   */
  boundHandshakes(url: string): boolean | undefined {
    return this.binding.get(url);
  }

  /** The configured relays whose /healthz said they do not check handshake binding. */
  get unboundRelays(): string[] {
    return this.opts.urls.filter((u) => this.binding.get(u) === false);
  }

  /**
   * Asks every configured relay whether it checks handshake binding, each time the link comes up.
   * What matters is the relays this host's handshakes could be presented to, not only the one the
   * link is on: a relay in the list that received them could replay them to any other that does
   * not check, and a phone's handshakes reach every relay of every host it uses (a relay that lies
   * can say yes; this catches honest relays started without --public-url). Each relay found not
   * checking is logged once; `qrauth status` lists them.
   */
  private checkBindings(): void {
    for (const url of this.opts.urls) void this.checkBinding(url);
  }

  private async checkBinding(url: string): Promise<void> {
    this.noteBinding(url, (await askHealth(url)).bound);
  }

  /** Keeps what a relay's /healthz said about binding; a relay newly found not checking is logged. */
  private noteBinding(url: string, bound: boolean | undefined): void {
    if (bound === undefined || this.closed) return;
    const before = this.binding.get(url);
    this.binding.set(url, bound);
    if (!bound && before !== false) {
      this.opts.log('relay_warning', { relay: url, cause: 'the relay does not check which relay a handshake is signed for (its operator should start it with --public-url)' });
    }
  }

  /** True when the link is on the first (preferred) relay of the list. */
  get onPreferred(): boolean {
    return this.index === 0;
  }

  start(): void {
    this.connectTo(0);
  }

  get up(): boolean {
    return this.socket?.connected ?? false;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.returning?.disconnect();
    this.socket?.disconnect();
  }

  private open(url: string): HostSocket {
    const socket: HostSocket = io(`${url}${HOST_NAMESPACE}`, {
      // WebSocket only: long-polling would bring its own, unbounded, payload limits.
      transports: ['websocket'],
      // Handed to ws by engine.io-client's websocket transport. A frame over the limit closes the
      // link at its header (1009) and we reconnect; no permessage-deflate, so a small frame
      // cannot inflate to a huge message (a compressed frame is then a protocol error, 1002).
      transportOptions: { websocket: { maxPayload: RELAY_MESSAGE_MAX_BYTES, perMessageDeflate: false } },
      // A fresh signed handshake for every connection: time and nonce change each time, and it names
      // this relay (v2), so no other relay in the list can present it here.
      auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'host', this.opts.host.seed, Date.now(), url) as unknown as Record<string, unknown>),
      // Retries are ours: the next attempt may be another relay.
      reconnection: false,
      forceNew: true,
      timeout: 10_000,
      autoConnect: false,
    });
    socket.on('context', (req, ack) => this.answerAsync(ack, () => this.onContext(req)));
    socket.on('decision', (msg, ack) => this.answerAsync(ack, () => this.onDecision(msg)));
    socket.on('enroll', (msg, ack) => this.answerAsync(ack, () => this.onEnroll(msg)));
    socket.on('revokeLeases', (msg, ack) => this.answerAsync(ack, () => this.onRevokeLeases(msg)));
    return socket;
  }

  /** Makes `socket` (connected to urls[index]) the live link and watches it. */
  private adopt(socket: HostSocket, index: number): void {
    const url = this.opts.urls[index]!;
    this.socket = socket;
    this.index = index;
    socket.on('disconnect', (reason, description) => {
      if (this.socket !== socket) return;
      this.opts.log('relay_link', { state: 'down', relay: url, reason, ...wsFailure(description) });
      this.announce(false);
      this.failed(socket);
    });
  }

  private connectTo(index: number): void {
    if (this.closed) return;
    const url = this.opts.urls[index]!;
    const socket = this.open(url);
    this.socket = socket;
    this.index = index;
    socket.once('connect', () => {
      socket.off('connect_error');
      if (this.closed || this.socket !== socket) return void socket.disconnect();
      this.attempts = 0;
      this.adopt(socket, index);
      this.opts.log('relay_link', { state: 'up', relay: url, ...(this.opts.urls.length > 1 ? { preferred: index === 0 } : {}) });
      this.announce(true);
      this.scheduleProbe();
      this.checkBindings();
    });
    socket.on('connect_error', (err) => {
      if (this.socket !== socket) return;
      this.opts.log('relay_link', { state: 'error', relay: url, cause: err.message, ...wsFailure(err) });
      this.failed(socket);
    });
    socket.connect();
  }

  /** The current link failed: after a jittered delay, try the next relay of the list. */
  private failed(socket: HostSocket): void {
    socket.removeAllListeners('disconnect');
    socket.disconnect();
    if (this.closed || this.retryTimer) return;
    const n = this.opts.urls.length;
    // A quick pass over the list, then each full pass waits twice as long as the one before.
    const pass = Math.floor(this.attempts++ / n);
    const delay = Math.min(this.max, this.base * 2 ** Math.min(pass, 16)) * (0.5 + Math.random());
    const next = (this.index + 1) % n;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connectTo(next);
    }, delay);
    this.retryTimer.unref();
  }

  /** While on a relay other than the preferred one, ask the preferred one now and then whether it is back. */
  private scheduleProbe(): void {
    if (this.closed || this.index === 0 || this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probePreferred();
    }, this.probeMs * (0.75 + Math.random() / 2));
    this.probeTimer.unref();
  }

  private async probePreferred(): Promise<void> {
    if (this.closed || this.index === 0 || !this.up) return;
    const preferred = this.opts.urls[0]!;
    const health = await askHealth(preferred);
    this.noteBinding(preferred, health.bound);
    if (!health.ok || this.closed || this.index === 0 || !this.up) return this.scheduleProbe();
    // Make before break: the old link keeps answering until the preferred one is connected.
    const fresh = this.open(preferred);
    this.returning = fresh;
    const giveUp = () => {
      fresh.removeAllListeners();
      fresh.disconnect();
      if (this.returning === fresh) this.returning = null;
      this.scheduleProbe();
    };
    fresh.once('connect_error', giveUp);
    fresh.once('connect', () => {
      this.returning = null;
      fresh.off('connect_error', giveUp);
      if (this.closed) return void fresh.disconnect();
      const old = this.socket;
      const from = this.url;
      this.adopt(fresh, 0);
      this.attempts = 0;
      old?.removeAllListeners('disconnect');
      old?.disconnect();
      this.opts.log('relay_link', { state: 'up', relay: preferred, preferred: true, from });
      this.announce(true);
      this.checkBindings();
    });
    fresh.connect();
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

  private async onContext(req: unknown): Promise<ContextAck> {
    const { sid } = parse(contextRequestFromRelay, req, 'context');
    return { ok: true, context: await this.opts.sessions.contextFor(sid) };
  }

  private async onDecision(raw: unknown): Promise<DecisionAck> {
    const msg = parse(decisionMessage, raw, 'decision');
    const out = await this.opts.sessions.applyDecision(msg);
    if (!out.ok) {
      this.opts.log('decision_rejected', { sid: msg.sid.slice(0, 8), device: msg.deviceId, code: out.code, cause: out.message });
      return out;
    }
    return { ok: true, result: out.result };
  }

  private async onRevokeLeases(raw: unknown): Promise<LeaseRevokeAck> {
    const msg = parse(leaseRevokeMessage, raw, 'revokeLeases');
    if (!this.opts.onRevokeLeases) return { ok: true, revoked: 0 };
    return this.opts.onRevokeLeases(msg);
  }

  private async onEnroll(raw: unknown): Promise<EnrollAck> {
    const msg = parse(enrollMessage, raw, 'enroll');
    if (!this.opts.onEnroll) return { ok: false, code: 'QRA_ERR_ENROLL', message: 'no enrollment is open on this host' };
    return this.opts.onEnroll(msg);
  }
}
