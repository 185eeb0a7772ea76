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
  type ErrorCode,
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
import { DEVICES_FILE_ERROR_TEXT, type Device } from './devices-file.js';
import type { HostKey } from './host-key.js';
import type { LoginSource } from './login-source.js';
import type { PasskeyVerifier, UserVerificationPolicy } from './webauthn.js';

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
  /** The lease the phone may grant: sshd's verified key and the durations allowed (leases.ts). */
  leaseOffer?: { keyFp: string; seconds: number[] };
  /** The PAM line's `uv=required`: this login needs a passkey assertion with UV whatever the host's policy. */
  userVerification?: 'required';
}

export interface Verdict {
  state: Exclude<SessionState, 'pending'>;
  how: 'phone' | 'code' | 'expiry' | 'cancel';
  deviceId?: string;
  /** Shown to the user instead of the state's usual words (why offline codes are locked). */
  message?: string;
  /** The phone approved for this long from this key (checked against the session's offer). */
  lease?: { seconds: number; keyFp: string };
  /** The approval carried a verified passkey assertion with UV (fingerprint, face, PIN): the login log's uv=. */
  userVerified?: boolean;
  /** Why the session ended this way, for the log (the message is for the person). */
  cause?: string;
}

/** How approvals and codes are checked beyond the device signature (config: userVerification, offlineCodes). */
export interface ApprovalPolicy {
  /** One per agent: it owns the passkey sign counters. */
  verifier: PasskeyVerifier;
  userVerification: UserVerificationPolicy;
  offlineCodes: boolean;
}

/** What the terminal shows when a host that turned offline codes off is sent one. */
export const OFFLINE_CODES_OFF_MESSAGE = 'This host does not accept codes typed from the app; log in again and approve on the phone.';

/** How far a phone's signed clock may be from ours; the session's own expiry is what binds. */
const DECISION_CLOCK_SKEW_MS = 10 * 60_000;

export class Session extends EventEmitter {
  readonly sid: string;
  readonly nonce: Uint8Array;
  readonly user: string;
  readonly rhost: string;
  readonly service: string;
  readonly tty: string;
  readonly leaseOffer: { keyFp: string; seconds: number[] } | undefined;
  /** The PAM line asked for user verification (uv=required). */
  readonly uvRequired: boolean;
  readonly expiresAt: number; // ms
  state: SessionState = 'pending';
  verdict: Verdict | null = null;
  codeTries = 0;
  readonly loadDevices: () => Device[];
  private timer: NodeJS.Timeout;
  /** Signed once, on the first ask: the source's name may still be resolving at BEGIN. */
  private context: Promise<SignedContext> | null = null;
  private readonly sign: () => Promise<SignedContext>;

  /**
   * `source`: what the host knows of the source address (login-source.ts), signed into the
   * context. The name lookup runs while the QR is shown, so BEGIN is never kept waiting for it.
   */
  constructor(host: HostKey, hostname: string, init: SessionInit, expirySeconds: number, now = Date.now(), source?: { name: Promise<string | undefined>; firstFromAddress?: boolean }) {
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
      ...(init.leaseOffer ? { keyFp: init.leaseOffer.keyFp, leaseSeconds: [...init.leaseOffer.seconds] } : {}),
    };
    this.leaseOffer = init.leaseOffer;
    this.uvRequired = init.userVerification === 'required';
    this.sign = async () => {
      const rhostName = await source?.name;
      const signed = {
        ...fields,
        ...(rhostName !== undefined ? { rhostName } : {}),
        ...(source?.firstFromAddress !== undefined ? { firstFromAddress: source.firstFromAddress } : {}),
      };
      return { v: 1 as const, ...signed, sig: toB64url(host.sign(contextBytes(signed))) };
    };
    this.timer = setTimeout(() => this.finish({ state: 'expired', how: 'expiry' }), this.expiresAt - now);
    this.timer.unref();
  }

  /** The context the phone is shown: the same signed bytes however often it is asked for. */
  signedContext(): Promise<SignedContext> {
    this.context ??= this.sign();
    return this.context;
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
  | { ok: false; code: ErrorCode; message: string };

export type CodeOutcome = { ok: true; deviceId: string } | { ok: false; triesLeft: number; locked: boolean };

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly host: HostKey,
    private readonly hostname: string,
    private readonly expirySeconds: number,
    /** Wrong codes across sessions and restarts (code-budget.ts); none: three tries a session only. */
    private readonly codeBudget?: CodeBudget,
    /** Passkey and offline-code policy; none: signatures alone, codes accepted (tests of other parts). */
    private readonly approvalPolicy?: ApprovalPolicy,
    /** Reverse names and seen addresses for the context; none: the context carries neither. */
    private readonly source?: LoginSource,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  create(init: SessionInit): Session {
    const src = this.source;
    // sudo, su and local logins have no source address: nothing to say about it.
    const facts =
      src && init.rhost !== ''
        ? { name: src.names ? src.names.nameOf(init.rhost) : Promise.resolve(undefined), firstFromAddress: src.seen.isFirst(init.user, init.rhost) }
        : undefined;
    const s = new Session(this.host, this.hostname, init, this.expirySeconds, Date.now(), facts);
    this.sessions.set(s.sid, s);
    s.once('verdict', (v: Verdict) => {
      this.sessions.delete(s.sid);
      if (src && v.state === 'approved' && init.rhost !== '') src.seen.record(init.user, init.rhost);
    });
    return s;
  }

  get(sid: string): Session | undefined {
    return this.sessions.get(sid);
  }

  /**
   * Verify a phone's signed decision: device enrolled for this user, signature over our nonce,
   * session open; then its passkey assertion against the policy (webauthn.ts).
   */
  async applyDecision(msg: DecisionMessage, now = Date.now()): Promise<DecisionOutcome> {
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
    // A lease only as this session offered it: the key and a duration the host signed in the context.
    if (msg.lease) {
      const offer = s.leaseOffer;
      if (msg.decision !== 'approve' || !offer || msg.lease.keyFp !== offer.keyFp || !offer.seconds.includes(msg.lease.seconds)) {
        return { ok: false, code: 'QRA_ERR_LEASE', message: 'this host did not offer that lease for this login; approve without one' };
      }
    }
    const fields = {
      hostId: this.host.hostId,
      sid: s.sid,
      nonce: s.nonce,
      user: s.user,
      decision: msg.decision,
      time: msg.time,
      deviceId: device.deviceId,
      ...(msg.lease ? { lease: msg.lease } : {}),
    };
    const sig = Buffer.from(msg.sig, 'base64url');
    if (!nodeCrypto.ed25519Verify(device.publicKey, decisionBytes(fields), sig)) {
      return { ok: false, code: 'QRA_ERR_SIGNATURE', message: 'the decision signature does not verify' };
    }
    let userVerified = false;
    // Fail closed: a line that asks for UV on a store built without a verifier approves nothing.
    if (s.uvRequired && !this.approvalPolicy && msg.decision === 'approve') {
      return { ok: false, code: 'QRA_ERR_USER_VERIFICATION', message: 'this login needs a passkey check this host cannot make' };
    }
    if (this.approvalPolicy) {
      // A copy of the nonce: the session zeroes its own when it ends, possibly during the await.
      const nonce = Uint8Array.from(s.nonce);
      const passkey = await this.approvalPolicy.verifier
        .check(s.uvRequired ? 'required' : this.approvalPolicy.userVerification, { fields: { ...fields, nonce }, device, assertion: msg.assertion })
        .finally(() => nonce.fill(0));
      // The check awaited: another decision, a code, expiry or the PAM client may have ended the login.
      if (!s.pending) return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'the login already ended' };
      if (!passkey.ok) {
        // A copied passkey ends the login; any other refusal leaves it open for another try from the phone.
        if (passkey.reason === 'counter_regressed') {
          s.finish({ state: 'denied', how: 'phone', deviceId: device.deviceId, message: passkey.message, cause: 'passkey counter went backwards (clone suspected)' });
        }
        return { ok: false, code: passkey.code, message: passkey.message };
      }
      userVerified = passkey.checked && passkey.userVerified;
    }
    const state = msg.decision === 'approve' ? 'approved' : 'denied';
    if (!s.finish({ state, how: 'phone', deviceId: device.deviceId, ...(msg.lease ? { lease: msg.lease } : {}), userVerified })) {
      return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'the login already ended' };
    }
    return { ok: true, result: state, deviceId: device.deviceId };
  }

  /** Check a typed offline code against every enrolled device, in constant time per device. */
  checkCode(s: Session, digits: string, now = Date.now()): CodeOutcome {
    if (!s.pending) return { ok: false, triesLeft: 0, locked: true };
    // A code proves no fingerprint or PIN: the strictest hosts turn them off (docs/operations.md).
    if (this.approvalPolicy && !this.approvalPolicy.offlineCodes) {
      s.finish({ state: 'denied', how: 'code', message: OFFLINE_CODES_OFF_MESSAGE, cause: 'offline codes are off on this host' });
      return { ok: false, triesLeft: 0, locked: true };
    }
    // Asked before any code is computed: a refused guess is never compared, so it tells nothing.
    const admitted = this.codeBudget?.admit(s.user, now);
    if (admitted && !admitted.ok) {
      s.finish({ state: 'locked', how: 'code', message: admitted.message });
      return { ok: false, triesLeft: 0, locked: true };
    }
    let devices: Device[];
    try {
      devices = s.loadDevices();
    } catch (e) {
      // Nothing was compared: not a wrong guess (counting it would use up, and could lock, the
      // user's offline codes), but no login either.
      s.finish({ state: 'denied', how: 'code', message: DEVICES_FILE_ERROR_TEXT, cause: (e as Error).message });
      return { ok: false, triesLeft: 0, locked: true };
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
  async contextFor(sid: string): Promise<SignedContext> {
    const s = this.sessions.get(sid);
    if (!s || !s.pending) throw new QrauthError('QRA_ERR_UNKNOWN_SESSION', 'no such login is waiting (it ended or never existed)');
    return s.signedContext();
  }

  closeAll(): void {
    for (const s of [...this.sessions.values()]) s.finish({ state: 'cancelled', how: 'cancel' });
  }
}
