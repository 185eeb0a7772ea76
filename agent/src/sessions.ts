/**
 * Login sessions: made on BEGIN, ended by the first valid decision, a correct code, three wrong
 * codes, expiry, or the PAM connection closing. The nonce never leaves this file except inside the
 * QR payload; it is compared and signed over, never logged.
 */
import { EventEmitter } from 'node:events';
import {
  MAX_CODE_TRIES,
  QrauthError,
  type DecisionMessage,
  type SignedContext,
  contextBytes,
  decisionBytes,
  equalBytes,
  offlineCode,
  offlineKey,
  toB64url,
  utf8,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { CodeBudget } from './code-budget.js';
import type { Device } from './devices-file.js';
import type { HostKey } from './host-key.js';

export type SessionState = 'pending' | 'approved' | 'denied' | 'expired' | 'locked' | 'cancelled';

export interface SessionInit {
  user: string;
  rhost: string;
  service: string;
  tty: string;
  /** Reads the user's devices now (so revocation takes effect mid-session). */
  loadDevices: () => Device[];
  /** A sid and nonce made ahead of time (ChallengePool); fresh ones when absent. */
  secrets?: { sid: string; nonce: Uint8Array };
}

export interface Verdict {
  state: Exclude<SessionState, 'pending'>;
  how: 'phone' | 'code' | 'expiry' | 'cancel';
  deviceId?: string;
  /** Shown to the user instead of the state's usual words (why offline codes are locked). */
  message?: string;
}

/** How far a phone's signed clock may be from ours; the session's own expiry is what binds. */
const DECISION_CLOCK_SKEW_MS = 10 * 60_000;

export class Session extends EventEmitter {
  readonly sid: string;
  readonly nonce: Uint8Array;
  readonly user: string;
  readonly rhost: string;
  readonly service: string;
  readonly tty: string;
  readonly context: SignedContext;
  readonly expiresAt: number; // ms
  state: SessionState = 'pending';
  verdict: Verdict | null = null;
  codeTries = 0;
  readonly loadDevices: () => Device[];
  private timer: NodeJS.Timeout;

  constructor(host: HostKey, hostname: string, init: SessionInit, expirySeconds: number, now = Date.now()) {
    super();
    this.sid = init.secrets?.sid ?? toB64url(nodeCrypto.randomBytes(16));
    this.nonce = init.secrets?.nonce ?? nodeCrypto.randomBytes(16);
    this.user = init.user;
    this.rhost = init.rhost;
    this.service = init.service;
    this.tty = init.tty;
    this.loadDevices = init.loadDevices;
    const iat = Math.floor(now / 1000);
    this.expiresAt = now + expirySeconds * 1000;
    const fields = {
      hostId: host.hostId,
      sid: this.sid,
      user: init.user,
      hostname,
      rhost: init.rhost,
      service: init.service,
      iat,
      exp: iat + expirySeconds,
    };
    this.context = { v: 1, ...fields, sig: toB64url(host.sign(contextBytes(fields))) };
    this.timer = setTimeout(() => this.finish({ state: 'expired', how: 'expiry' }), this.expiresAt - now);
    this.timer.unref();
  }

  get pending(): boolean {
    return this.state === 'pending';
  }

  /** End the session once; later calls are ignored (single use). */
  finish(v: Verdict): boolean {
    if (this.state !== 'pending') return false;
    clearTimeout(this.timer);
    this.state = v.state;
    this.verdict = v;
    this.nonce.fill(0);
    this.emit('verdict', v);
    return true;
  }
}

export type DecisionOutcome =
  | { ok: true; result: 'approved' | 'denied'; deviceId: string }
  | { ok: false; code: 'QRA_ERR_UNKNOWN_SESSION' | 'QRA_ERR_EXPIRED' | 'QRA_ERR_NOT_ENROLLED' | 'QRA_ERR_SIGNATURE' | 'QRA_ERR_DEVICES_FILE'; message: string };

export type CodeOutcome = { ok: true; deviceId: string } | { ok: false; triesLeft: number; locked: boolean };

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly host: HostKey,
    private readonly hostname: string,
    private readonly expirySeconds: number,
    /** Wrong codes across sessions and restarts (code-budget.ts); none: three tries a session only. */
    private readonly codeBudget?: CodeBudget,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  create(init: SessionInit): Session {
    const s = new Session(this.host, this.hostname, init, this.expirySeconds);
    this.sessions.set(s.sid, s);
    s.once('verdict', () => this.sessions.delete(s.sid));
    return s;
  }

  get(sid: string): Session | undefined {
    return this.sessions.get(sid);
  }

  /** Verify a phone's signed decision: device enrolled for this user, signature over our nonce, session open. */
  applyDecision(msg: DecisionMessage, now = Date.now()): DecisionOutcome {
    const s = this.sessions.get(msg.sid);
    if (!s || !s.pending) return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'no such login is waiting (it ended or never existed)' };
    if (msg.hostId !== this.host.hostId) return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'this decision is for another host' };
    if (now >= s.expiresAt) {
      s.finish({ state: 'expired', how: 'expiry' });
      return { ok: false, code: 'QRA_ERR_EXPIRED', message: 'the login expired' };
    }
    if (Math.abs(msg.time - now) > DECISION_CLOCK_SKEW_MS) {
      return { ok: false, code: 'QRA_ERR_SIGNATURE', message: "the phone's clock is too far off; set it automatically" };
    }
    let devices: Device[];
    try {
      devices = s.loadDevices();
    } catch (e) {
      return { ok: false, code: 'QRA_ERR_DEVICES_FILE', message: (e as Error).message };
    }
    const device = devices.find((d) => d.deviceId === msg.deviceId);
    if (!device) return { ok: false, code: 'QRA_ERR_NOT_ENROLLED', message: 'this phone is not enrolled for this user on this host' };
    const signed = decisionBytes({
      hostId: this.host.hostId,
      sid: s.sid,
      nonce: s.nonce,
      user: s.user,
      decision: msg.decision,
      time: msg.time,
      deviceId: device.deviceId,
    });
    const sig = Buffer.from(msg.sig, 'base64url');
    if (!nodeCrypto.ed25519Verify(device.publicKey, signed, sig)) {
      return { ok: false, code: 'QRA_ERR_SIGNATURE', message: 'the decision signature does not verify' };
    }
    const state = msg.decision === 'approve' ? 'approved' : 'denied';
    if (!s.finish({ state, how: 'phone', deviceId: device.deviceId })) {
      return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'the login already ended' };
    }
    return { ok: true, result: state, deviceId: device.deviceId };
  }

  /** Check a typed offline code against every enrolled device, in constant time per device. */
  checkCode(s: Session, digits: string, now = Date.now()): CodeOutcome {
    if (!s.pending) return { ok: false, triesLeft: 0, locked: true };
    // Asked before any code is computed: a refused guess is never compared, so it tells nothing.
    const admitted = this.codeBudget?.admit(s.user, now);
    if (admitted && !admitted.ok) {
      s.finish({ state: 'locked', how: 'code', message: admitted.message });
      return { ok: false, triesLeft: 0, locked: true };
    }
    let devices: Device[] = [];
    try {
      devices = s.loadDevices();
    } catch {
      devices = [];
    }
    const typed = utf8(digits);
    let match: string | undefined;
    for (const d of devices) {
      const k = offlineKey(nodeCrypto, this.host.seed, d.publicKey, this.host.hostId, d.deviceId);
      const code = offlineCode(nodeCrypto, k, this.host.hostId, s.sid, s.nonce);
      k.fill(0);
      // Compare every device's code (no early exit) so timing says nothing about which one is close.
      if (equalBytes(utf8(code), typed) && match === undefined) match = d.deviceId;
    }
    typed.fill(0);
    if (match !== undefined) {
      this.codeBudget?.recordSuccess(s.user);
      s.finish({ state: 'approved', how: 'code', deviceId: match });
      return { ok: true, deviceId: match };
    }
    s.codeTries++;
    const budget = this.codeBudget?.recordFailure(s.user, now);
    if (budget && !budget.ok) {
      s.finish({ state: 'locked', how: 'code', message: budget.message });
      return { ok: false, triesLeft: 0, locked: true };
    }
    const triesLeft = Math.max(0, MAX_CODE_TRIES - s.codeTries);
    if (triesLeft === 0) s.finish({ state: 'locked', how: 'code' });
    return { ok: false, triesLeft, locked: triesLeft === 0 };
  }

  /** Context for a phone (public: no nonce in it). */
  contextFor(sid: string): SignedContext {
    const s = this.sessions.get(sid);
    if (!s || !s.pending) throw new QrauthError('QRA_ERR_UNKNOWN_SESSION', 'no such login is waiting (it ended or never existed)');
    return s.context;
  }

  closeAll(): void {
    for (const s of [...this.sessions.values()]) s.finish({ state: 'cancelled', how: 'cancel' });
  }
}
