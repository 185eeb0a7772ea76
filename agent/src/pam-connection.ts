/**
 * One login's conversation on the PAM socket: BEGIN, then WAIT and CODE until a verdict
 * (docs/protocol.md §1). Every way in (bytes from the module, the session's verdict, the relay
 * link changing, timers) goes through `guard`, the one place that catches: whatever goes wrong
 * while handling one connection ends that login with ERROR and a log line, never the agent,
 * which serves every login on the host (issue #10, item 2).
 */
import type { Socket } from 'node:net';
import {
  FrameDecoder,
  Mode,
  MsgType,
  QrStyle,
  Result,
  type BeginMsg,
  type FrameMsg,
  type ResultValue,
  encodeFrame,
  isQrauthError,
  normaliseCode,
} from '../../protocol/src/index.js';
import type { Logger } from './log.js';
import type { ChallengePool } from './challenge-pool.js';
import { renderQr } from './qr-render.js';
import type { Session, SessionStore } from './sessions.js';
import { DEVICES_FILE_ERROR_TEXT, type Device } from './devices-file.js';
import { type LeaseStore, leaseOffer } from './leases.js';
import { parseAuthInfo } from './ssh-auth-info.js';

/** RENDERs one login may ask for (the module itself stops after 10 rounds). */
export const MAX_RENDERS = 16;

/** A stalled peer mid-frame, or a connection that never says BEGIN, is cut off after this. */
export const FRAME_TIMEOUT_MS = 10_000;

/**
 * One line within 80 columns. `a` and `t` are the way out of a QR the terminal garbles (a
 * non-UTF-8 locale, a client that escapes it): the module asks for the same session again
 * as an ASCII QR or as text (RENDER).
 */
export const PROMPT_TEXT = 'Scan with qrauth, approve, press Enter, or type the code; a=ASCII QR, t=text: ';
export const INFO_TEXT = 'Scan with qrauth and approve on your phone. Waiting for approval...';
/** What the PAM client is told when a handler failed (the detail is in the log; see DEVICES_FILE_ERROR_TEXT). */
export const INTERNAL_ERROR_TEXT = 'the login approval service failed; ask the administrator (see the system log)';

/** What one login needs from the agent. */
export interface PamLoginDeps {
  sessions: SessionStore;
  log: Logger;
  /** Resolve the user's devices; the loader throws QRA_ERR_DEVICES_FILE on a file it cannot use. */
  devicesFor(begin: BeginMsg): () => Device[];
  /** Whether the relay link is up (an online verdict can come). */
  relayUp(): boolean;
  /** The effective mode for a BEGIN (auto → prompt or info). */
  effectiveMode(begin: BeginMsg): typeof Mode.PROMPT | typeof Mode.INFO;
  /** Whether info messages of this service pass only ASCII (sshd ≥ 10.3 escapes the rest). */
  asciiOnlyInfo(begin: BeginMsg): boolean;
  /** Login QRs rendered ahead of time. */
  challenges: ChallengePool;
  /** A device approved a login (for `qrauth devices`' last-used column). */
  onApproved?(deviceId: string): void;
  /** Stalled-peer cut-off. @default FRAME_TIMEOUT_MS */
  frameTimeoutMs?: number;
  /** Leases (leases.ts); with maxLeaseSeconds 0 or absent, none is offered or honoured. */
  leases?: LeaseStore;
  maxLeaseSeconds?: number;
  /** This host's name, recorded in each lease. */
  hostname?: string;
}

/** What the server lends a connection: the shared relay-change subscription, and its end. */
export interface PamConnectionHooks {
  /** Be told when the relay link changes; returns the unsubscribe. */
  watchRelay(cb: (up: boolean) => void): () => void;
  closed(): void;
  /**
   * A BEGIN naming a caller (PAM_RUSER): a place among that caller's waiting logins, or null when
   * they hold their share. The returned function gives the place back.
   */
  admitCaller?(ruser: string): (() => void) | null;
  /** The agent is shutting down: a BEGIN now gets no answer, so the module sends it to the next agent. */
  stopping(): boolean;
}

type ConnState = 'begin' | 'ready' | 'waiting' | 'done';

/** The frame parser checks structure; values are range-checked here. Returns what is wrong, or null. */
export function badBegin(m: BeginMsg): string | null {
  if (m.user.length === 0) return 'empty user';
  if (m.mode !== undefined && m.mode > Mode.INFO) return 'mode out of range';
  if (m.qr !== undefined && m.qr > QrStyle.ASCII) return 'qr out of range';
  if (m.timeout !== undefined && (m.timeout < 1 || m.timeout > 3600)) return 'timeout out of range';
  if (m.uv !== undefined && m.uv !== 1) return 'uv out of range';
  if ((m.uid === undefined) !== (m.home === undefined)) return 'uid and home go together';
  return null;
}

export class PamConnection {
  private readonly decoder = new FrameDecoder();
  private state: ConnState = 'begin';
  private begin: BeginMsg | null = null;
  /** The user's devices as read at BEGIN (names for lease messages). */
  private devices: Device[] | null = null;
  private session: Session | null = null;
  /** What the CHALLENGE showed, for a RENDER of the same session. */
  private shown: { payload: string; mode: typeof Mode.PROMPT | typeof Mode.INFO } | null = null;
  /** RENDERs answered on this connection: a person asks once or twice; a loop is cut off. */
  private renders = 0;
  /** Gives back this login's place among its caller's (PAM_RUSER) waiting logins. */
  private releaseCaller: (() => void) | null = null;
  private waitTimer: NodeJS.Timeout | null = null;
  private frameTimer: NodeJS.Timeout | null = null;
  private unsubscribeRelay: (() => void) | null = null;
  private readonly frameTimeout: number;
  /** The session's verdict while the module waits for it; one bound function, so it can be removed. */
  private readonly onVerdict = () => this.guard('verdict', () => {
    if (this.state === 'waiting' && this.session) this.sendSessionVerdict(this.session);
  });

  constructor(
    private readonly sock: Socket,
    private readonly deps: PamLoginDeps,
    private readonly hooks: PamConnectionHooks,
  ) {
    this.frameTimeout = deps.frameTimeoutMs ?? FRAME_TIMEOUT_MS;
    // Cut off a peer that stalls mid-frame or never begins. One deadline a frame, from its first
    // byte (the first frame's from the connection): more bytes of the same frame do not extend
    // it, so a peer trickling a byte at a time cannot hold a connection open.
    this.frameTimer = setTimeout(() => this.guard('frame timer', () => this.protocolError('no BEGIN in time')), this.frameTimeout);
    sock.on('data', (chunk: Buffer) => this.guard('data', () => this.onData(chunk)));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.guard('close', () => this.onClose()));
  }

  /**
   * The one place that catches. A handler that throws is a bug or an input we did not foresee:
   * end this login with ERROR (the session, if any, is cancelled: fail closed) and log it for the
   * operator; the other logins and the agent go on. Errors are logged by code and message only.
   */
  private guard(handler: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      try {
        this.deps.log('internal_error', {
          where: 'pam',
          handler,
          user: this.begin?.user,
          sid: this.session ? this.session.sid.slice(0, 8) : undefined,
          code: isQrauthError(e) ? e.code : undefined,
          cause: e instanceof Error ? `${e.name}: ${e.message}` : 'non-error thrown',
        });
        if (this.session?.pending) this.session.finish({ state: 'cancelled', how: 'cancel' });
        if (this.state !== 'done') this.finalVerdict(Result.ERROR, INTERNAL_ERROR_TEXT);
      } catch {
        /* failing while failing: the connection goes, the agent stays */
      } finally {
        if (this.state !== 'done') this.sock.destroy();
        this.state = 'done';
      }
    }
  }

  private send(msg: FrameMsg): void {
    if (!this.sock.destroyed) this.sock.write(encodeFrame(msg));
  }

  private stopWaiting(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = null;
    this.unsubscribeRelay?.();
    this.unsubscribeRelay = null;
    this.session?.removeListener('verdict', this.onVerdict);
  }

  private finalVerdict(result: ResultValue, message?: string): void {
    this.stopWaiting();
    this.state = 'done';
    this.send({ type: MsgType.VERDICT, result, ...(message ? { message } : {}) });
    this.sock.end();
  }

  private logDecision(result: string, how: string, deviceId?: string, cause?: string, extra?: Record<string, string>): void {
    // user first, as every login line (operators and tests grep "event=login user=…").
    this.deps.log('login', {
      user: this.begin?.user,
      rhost: this.begin?.rhost || undefined,
      service: this.begin?.service,
      sid: this.session ? this.session.sid.slice(0, 8) : undefined,
      device: deviceId,
      ...extra,
      how,
      result,
      cause,
    });
  }

  private sendSessionVerdict(s: Session): void {
    const v = s.verdict!;
    const map = {
      approved: [Result.APPROVED, undefined],
      denied: [Result.DENIED, 'Login denied on the phone.'],
      expired: [Result.EXPIRED, 'The QR code expired. Try again.'],
      locked: [Result.LOCKED, 'Too many wrong codes. Try again.'],
      cancelled: [Result.ERROR, 'The login was cancelled.'],
    } as const;
    // A message of the session's own (offline codes locked: code-budget.ts) goes out as ERROR,
    // whose text pam_qrauth shows as it is; LOCKED's it replaces with fixed words.
    const [result, message] = v.message !== undefined ? [Result.ERROR, v.message] : map[v.state];
    // uv=yes: the approval carried a passkey assertion the agent verified with user verification.
    this.logDecision(v.state, v.how, v.deviceId, v.cause, v.how === 'phone' || v.how === 'code' ? { uv: v.userVerified ? 'yes' : 'no' } : undefined);
    if (v.state === 'approved' && v.deviceId) this.recordApproval(v.deviceId);
    if (v.state === 'approved' && v.deviceId && v.lease) this.grantLease(s, v.deviceId, v.lease);
    this.finalVerdict(result, v.message ?? message);
  }

  /** Bookkeeping for `qrauth devices`: its failure must not turn an approval into an error. */
  private recordApproval(deviceId: string): void {
    try {
      this.deps.onApproved?.(deviceId);
    } catch (e) {
      this.deps.log('internal_error', { where: 'last_used', device: deviceId, cause: e instanceof Error ? e.message : 'non-error thrown' });
    }
  }

  /**
   * Before a QR: a live lease for this user, service and sshd-verified key from a device still
   * enrolled approves at once. Otherwise, returns the lease the phone may grant, if any. Every
   * BEGIN that asked for leases (module option `lease`) and gets none says why in the log.
   */
  private checkLease(msg: BeginMsg, devices: Device[]): { approved: true } | { approved: false; offer?: { keyFp: string; seconds: number[] } } {
    const { deps } = this;
    if (msg.lease !== 1) return { approved: false };
    const offered = leaseOffer(deps.maxLeaseSeconds ?? 0);
    const none = (cause: string) => {
      deps.log('lease', { user: msg.user, service: msg.service, result: 'none', cause });
      return { approved: false as const };
    };
    if (!deps.leases || offered.length === 0) return none('leases are off on this host (maxLeaseSeconds 0)');
    const info = parseAuthInfo(msg.authInfo);
    if (!info.ok) return none(info.problem);
    if (info.keys.length === 0) return none('sshd verified no public key (no publickey method)');
    const fps = info.keys.map((k) => k.fingerprint);
    const lease = deps.leases.find(msg.user, msg.service, fps, devices.map((d) => d.deviceId));
    if (lease) {
      const name = devices.find((d) => d.deviceId === lease.deviceId)?.name ?? lease.deviceName;
      const until = new Date(lease.expires * 1000);
      const hhmm = `${String(until.getHours()).padStart(2, '0')}:${String(until.getMinutes()).padStart(2, '0')}`;
      this.logDecision('approved', 'lease', lease.deviceId, undefined, { lease: lease.id.slice(0, 8), key: lease.keyFp });
      this.recordApproval(lease.deviceId);
      this.finalVerdict(Result.APPROVED, `qrauth: approved by lease from ${name} until ${hhmm}`);
      return { approved: true };
    }
    return { approved: false, offer: { keyFp: fps[0]!, seconds: offered } };
  }

  /**
   * Leases of this user and service from a phone no longer in the devices file (removed by hand,
   * or revoked while the agent was down) end now: enrolled again, it must not find them alive.
   */
  private dropOrphanLeases(msg: BeginMsg, devices: Device[]): void {
    const store = this.deps.leases;
    if (!store) return;
    const enrolled = new Set(devices.map((d) => d.deviceId));
    try {
      const n = store.revoke((l) => l.user === msg.user && l.service === msg.service && !enrolled.has(l.deviceId));
      if (n > 0) this.deps.log('leases_revoked', { user: msg.user, service: msg.service, by: 'devices_file', count: n });
    } catch (e) {
      // Not saved: they are gone from memory, and find() skips them while the device is absent.
      this.deps.log('internal_error', { where: 'lease', user: msg.user, cause: e instanceof Error ? e.message : 'non-error thrown' });
    }
  }

  /** The phone approved with a lease the session offered: keep it. A failure to save costs only the lease. */
  private grantLease(s: Session, deviceId: string, lease: { seconds: number; keyFp: string }): void {
    const { deps } = this;
    if (!deps.leases || !s.leaseOffer || lease.keyFp !== s.leaseOffer.keyFp || !s.leaseOffer.seconds.includes(lease.seconds)) return;
    try {
      const name = this.devices?.find((d) => d.deviceId === deviceId)?.name ?? '';
      const l = deps.leases.grant({ user: s.user, service: s.service, host: deps.hostname ?? '', keyFp: lease.keyFp, deviceId, deviceName: name }, lease.seconds);
      deps.log('lease_granted', { user: s.user, service: s.service, device: deviceId, key: l.keyFp, lease: l.id.slice(0, 8), seconds: lease.seconds });
    } catch (e) {
      deps.log('internal_error', { where: 'lease', user: s.user, cause: e instanceof Error ? e.message : 'non-error thrown' });
    }
  }

  private protocolError(why: string): void {
    this.deps.log('pam_protocol_error', { user: this.begin?.user, cause: why });
    this.sock.destroy();
  }

  private armFrameTimer(framesCompleted: number): void {
    if (!this.decoder.midFrame) {
      if (this.frameTimer) clearTimeout(this.frameTimer);
      this.frameTimer = null;
    } else if (!this.frameTimer || framesCompleted > 0) {
      if (this.frameTimer) clearTimeout(this.frameTimer);
      this.frameTimer = setTimeout(() => this.guard('frame timer', () => this.protocolError('stalled mid-frame')), this.frameTimeout);
    }
  }

  private onData(chunk: Buffer): void {
    let msgs: FrameMsg[];
    try {
      msgs = this.decoder.push(chunk);
    } catch (e) {
      return this.protocolError(isQrauthError(e) ? e.message : 'bad frame');
    }
    this.armFrameTimer(msgs.length);
    for (const m of msgs) {
      if (this.sock.destroyed || this.state === 'done') break;
      this.onMessage(m);
    }
  }

  private onMessage(msg: FrameMsg): void {
    if (this.state === 'begin') {
      if (msg.type !== MsgType.BEGIN) return this.protocolError('first message was not BEGIN');
      return this.onBegin(msg);
    }
    if (this.state !== 'ready') return this.protocolError('message while a verdict is pending');
    if (msg.type === MsgType.WAIT) return this.onWait(msg.maxWait);
    if (msg.type === MsgType.CODE) return this.onCode(msg.digits);
    if (msg.type === MsgType.RENDER) return this.onRender(msg.qr);
    return this.protocolError(`unexpected message type ${msg.type}`);
  }

  private onBegin(msg: BeginMsg): void {
    // An agent that is stopping would show a QR for a login it is about to drop (its sessions
    // close, then this connection): closed unanswered, the module sends its BEGIN once more, to
    // the next agent (pam_qrauth.c, begin_may_retry). A connection accepted just before the stop
    // can bring its BEGIN after it (systemctl restart with a login in the socket's backlog).
    if (this.hooks.stopping()) {
      this.state = 'done';
      this.sock.destroy();
      return;
    }
    const { deps } = this;
    this.begin = msg;
    const bad = badBegin(msg);
    if (bad) {
      this.logDecision('error', 'begin', undefined, bad);
      return this.finalVerdict(Result.ERROR, `qrauth: bad request from the PAM module (${bad})`);
    }
    if (msg.ruser !== undefined && this.hooks.admitCaller) {
      const release = this.hooks.admitCaller(msg.ruser);
      if (!release) {
        this.logDecision('error', 'begin', undefined, 'too many logins waiting from this caller', { ruser: msg.ruser });
        return this.finalVerdict(Result.ERROR, 'qrauth: too many of your logins are waiting for approval; finish or cancel them first');
      }
      this.releaseCaller = release;
    }
    let loadDevices: () => Device[];
    let devices: Device[];
    try {
      loadDevices = deps.devicesFor(msg);
      devices = loadDevices();
    } catch (e) {
      if (!isQrauthError(e, 'QRA_ERR_DEVICES_FILE')) throw e;
      // The detail (path, owner, mode) is for the operator; the client may not even be the user.
      this.logDecision('error', 'begin', undefined, e.message);
      return this.finalVerdict(Result.ERROR, DEVICES_FILE_ERROR_TEXT);
    }
    this.dropOrphanLeases(msg, devices);
    if (devices.length === 0) {
      this.logDecision('no_device', 'begin');
      return this.finalVerdict(Result.NO_DEVICE, `qrauth: no phone is enrolled for ${msg.user} on this host; run 'qrauth enroll'.`);
    }
    this.devices = devices;
    const lease = this.checkLease(msg, devices);
    if (lease.approved) return;
    const mode = deps.effectiveMode(msg);
    const ascii = msg.qr === QrStyle.ASCII || (mode === Mode.INFO && deps.asciiOnlyInfo(msg));
    // The usual UTF-8 QR comes ready-made from the pool; the rare ASCII one is rendered now.
    const prepared = deps.challenges.take();
    const session = deps.sessions.create({
      user: msg.user,
      rhost: msg.rhost ?? '',
      service: msg.service,
      tty: msg.tty ?? '',
      loadDevices,
      secrets: { sid: prepared.sid, nonce: prepared.nonce },
      ...(lease.offer ? { leaseOffer: lease.offer } : {}),
      // uv=required on the PAM line (sudo's step-up): stricter than the host's setting, never weaker.
      ...(msg.uv === 1 ? { userVerification: 'required' as const } : {}),
    });
    this.session = session;
    const payload = prepared.payload;
    // ASCII at two characters a module: a quiet zone of 1 keeps a version 5 code within 80 columns.
    const qr = ascii ? renderQr(payload, 'ascii') : { text: prepared.qrText };
    this.state = 'ready';
    // A session that ends while the user is not waiting (expiry) keeps the connection only
    // until the module next asks; a module that never asks is dropped after a grace period.
    session.once('verdict', () =>
      this.guard('verdict', () => {
        if (this.state !== 'waiting') setTimeout(() => this.sock.destroy(), 30_000).unref();
      }),
    );
    deps.log('challenge', { user: msg.user, rhost: msg.rhost || undefined, service: msg.service, sid: session.sid.slice(0, 8), mode: mode === Mode.INFO ? 'info' : 'prompt' });
    this.shown = { payload, mode };
    this.sendChallenge(session, qr.text);
  }

  /** The CHALLENGE: a picture (or none), then the payload line, then the one prompt line. */
  private sendChallenge(session: Session, picture: string): void {
    const { payload, mode } = this.shown!;
    this.send({
      type: MsgType.CHALLENGE,
      // Leading newline: OpenSSH's client prefixes the first prompt line with "(user@host) ".
      qrText: `\n${picture}${payload}\n`,
      prompt: mode === Mode.INFO ? INFO_TEXT : PROMPT_TEXT,
      expires: Math.max(0, Math.round((session.expiresAt - Date.now()) / 1000)),
      mode,
      payload,
    });
  }

  /**
   * The person asked for another drawing of the same session (same sid and nonce): a new QR
   * would be a new session to approve, and the phone may already have scanned this one.
   */
  private onRender(style: number): void {
    const s = this.session!;
    if (!s.pending) return this.sendSessionVerdict(s);
    if (++this.renders > MAX_RENDERS) return this.protocolError(`more than ${MAX_RENDERS} RENDER requests`);
    let picture: string;
    if (style === QrStyle.ASCII) picture = renderQr(this.shown!.payload, 'ascii').text;
    else if (style === QrStyle.UTF8) picture = renderQr(this.shown!.payload, 'utf8').text;
    else if (style === QrStyle.TEXT) picture = 'No QR: in the qrauth app, tap Scan and paste this line under the button:\n';
    else return this.protocolError('RENDER qr out of range');
    this.deps.log('rerender', { user: this.begin?.user, sid: s.sid.slice(0, 8), style: style === QrStyle.ASCII ? 'ascii' : style === QrStyle.TEXT ? 'text' : 'utf8' });
    this.sendChallenge(s, picture);
  }

  private onWait(maxWait: number | undefined): void {
    const s = this.session!;
    if (!s.pending) return this.sendSessionVerdict(s);
    if (!this.deps.relayUp()) {
      this.send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'The phone cannot reach this host right now; use the code from the app.' });
      return;
    }
    this.state = 'waiting';
    s.on('verdict', this.onVerdict);
    this.unsubscribeRelay = this.hooks.watchRelay((up) =>
      this.guard('relay change', () => {
        if (!up && this.state === 'waiting') {
          this.stopWaiting();
          this.state = 'ready';
          this.send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'The link to the phone was lost; use the code from the app.' });
        }
      }),
    );
    if (maxWait !== undefined) {
      this.waitTimer = setTimeout(
        () =>
          this.guard('wait timer', () => {
            if (this.state !== 'waiting') return;
            this.stopWaiting();
            this.state = 'ready';
            this.send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'No approval yet; you can type the code from the app.' });
          }),
        maxWait,
      );
    }
  }

  private onCode(digits: string): void {
    const s = this.session!;
    if (!s.pending) return this.sendSessionVerdict(s);
    const normal = normaliseCode(digits);
    const out = this.deps.sessions.checkCode(s, normal ?? '');
    if (out.ok || out.locked) return this.sendSessionVerdict(s);
    this.logDecision('code_wrong', 'code');
    this.send({ type: MsgType.VERDICT, result: Result.CODE_WRONG, triesLeft: out.triesLeft, message: `Wrong code, ${out.triesLeft} ${out.triesLeft === 1 ? 'try' : 'tries'} left.` });
  }

  private onClose(): void {
    this.hooks.closed();
    this.releaseCaller?.();
    this.releaseCaller = null;
    if (this.frameTimer) clearTimeout(this.frameTimer);
    this.frameTimer = null;
    this.stopWaiting();
    const s = this.session;
    if (s?.pending) {
      s.finish({ state: 'cancelled', how: 'cancel' });
      this.logDecision('cancelled', 'cancel', undefined, 'the PAM client went away');
    }
  }
}
