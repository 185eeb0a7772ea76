/**
 * The PAM side of the agent: /run/qrauth.sock, one connection per login attempt, framed
 * binary (docs/protocol.md §1). The session lives as long as the connection: if sshd drops
 * the login, the session is cancelled.
 */
import { type Server, type Socket, createServer } from 'node:net';
import { chmodSync, unlinkSync, lstatSync } from 'node:fs';
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
import type { Device } from './devices-file.js';

/** A stalled peer mid-frame, or a connection that never says BEGIN, is cut off after this. */
export const FRAME_TIMEOUT_MS = 10_000;

export const PROMPT_TEXT = 'Scan with qrauth, approve, then press Enter (or type the code from the app): ';
export const INFO_TEXT = 'Scan with qrauth and approve on your phone. Waiting for approval...';

export interface PamServerDeps {
  sessions: SessionStore;
  hostId: string;
  log: Logger;
  /** Resolve the user's devices; throws QRA_ERR_DEVICES_FILE on an unsafe file. */
  devicesFor(begin: BeginMsg): () => Device[];
  /** Whether the relay link is up (an online verdict can come). */
  relayUp(): boolean;
  /** Notified when the relay link state changes (to answer WAIT with OFFLINE at once). */
  onRelayChange(cb: (up: boolean) => void): () => void;
  /** The effective mode for a BEGIN (auto → prompt or info). */
  effectiveMode(begin: BeginMsg): typeof Mode.PROMPT | typeof Mode.INFO;
  /** Whether info messages of this service pass only ASCII (sshd ≥ 10.3 escapes the rest). */
  asciiOnlyInfo(begin: BeginMsg): boolean;
  /** Login QRs rendered ahead of time. */
  challenges: ChallengePool;
  /** A device approved a login (for `qrauth devices`' last-used column). */
  onApproved?(deviceId: string): void;
  maxConnections: number;
  /** Stalled-peer cut-off. @default FRAME_TIMEOUT_MS */
  frameTimeoutMs?: number;
}

type ConnState = 'begin' | 'ready' | 'waiting' | 'done';

/** The frame parser checks structure; values are range-checked here. Returns what is wrong, or null. */
export function badBegin(m: BeginMsg): string | null {
  if (m.user.length === 0) return 'empty user';
  if (m.mode !== undefined && m.mode > Mode.INFO) return 'mode out of range';
  if (m.qr !== undefined && m.qr > QrStyle.ASCII) return 'qr out of range';
  if (m.timeout !== undefined && (m.timeout < 1 || m.timeout > 3600)) return 'timeout out of range';
  if ((m.uid === undefined) !== (m.home === undefined)) return 'uid and home go together';
  return null;
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

  async close(): Promise<void> {
    this.unsubscribeRelay();
    for (const c of this.connections) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(sock: Socket): void {
    this.connections.add(sock);
    const decoder = new FrameDecoder();
    let state: ConnState = 'begin';
    let session: Session | null = null;
    let waitTimer: NodeJS.Timeout | null = null;
    let unsubscribeRelay: (() => void) | null = null;
    let begin: BeginMsg | null = null;
    const { deps } = this;
    const frameTimeout = deps.frameTimeoutMs ?? FRAME_TIMEOUT_MS;

    const send = (msg: FrameMsg) => {
      if (!sock.destroyed) sock.write(encodeFrame(msg));
    };
    const stopWaiting = () => {
      if (waitTimer) clearTimeout(waitTimer);
      waitTimer = null;
      unsubscribeRelay?.();
      unsubscribeRelay = null;
      session?.removeListener('verdict', onVerdict);
    };
    const finalVerdict = (result: ResultValue, message?: string) => {
      stopWaiting();
      state = 'done';
      send({ type: MsgType.VERDICT, result, ...(message ? { message } : {}) });
      sock.end();
    };
    const logDecision = (result: string, how: string, deviceId?: string, cause?: string) => {
      deps.log('login', {
        user: begin?.user,
        rhost: begin?.rhost || undefined,
        service: begin?.service,
        sid: session ? session.sid.slice(0, 8) : undefined,
        device: deviceId,
        how,
        result,
        cause,
      });
    };
    const sendSessionVerdict = (s: Session) => {
      const v = s.verdict!;
      const map = {
        approved: [Result.APPROVED, undefined],
        denied: [Result.DENIED, 'Login denied on the phone.'],
        expired: [Result.EXPIRED, 'The QR code expired. Try again.'],
        locked: [Result.LOCKED, 'Too many wrong codes. Try again.'],
        cancelled: [Result.ERROR, 'The login was cancelled.'],
      } as const;
      const [result, message] = map[v.state];
      logDecision(v.state, v.how, v.deviceId);
      if (v.state === 'approved' && v.deviceId) deps.onApproved?.(v.deviceId);
      finalVerdict(result, message);
    };
    function onVerdict() {
      if (state === 'waiting' && session) sendSessionVerdict(session);
    }
    const protocolError = (why: string) => {
      deps.log('pam_protocol_error', { user: begin?.user, cause: why });
      sock.destroy();
    };

    // Cut off a peer that stalls mid-frame or never begins. One deadline a frame, from its first
    // byte (the first frame's from the connection): more bytes of the same frame do not extend
    // it, so a peer trickling a byte at a time cannot hold a connection open.
    let frameTimer: NodeJS.Timeout | null = setTimeout(() => protocolError('no BEGIN in time'), frameTimeout);
    const armFrameTimer = (framesCompleted: number) => {
      if (!decoder.midFrame) {
        if (frameTimer) clearTimeout(frameTimer);
        frameTimer = null;
      } else if (!frameTimer || framesCompleted > 0) {
        if (frameTimer) clearTimeout(frameTimer);
        frameTimer = setTimeout(() => protocolError('stalled mid-frame'), frameTimeout);
      }
    };

    const onBegin = (msg: BeginMsg) => {
      begin = msg;
      const bad = badBegin(msg);
      if (bad) {
        logDecision('error', 'begin', undefined, bad);
        return finalVerdict(Result.ERROR, `qrauth: bad request from the PAM module (${bad})`);
      }
      let loadDevices: () => Device[];
      let devices: Device[];
      try {
        loadDevices = deps.devicesFor(msg);
        devices = loadDevices();
      } catch (e) {
        const cause = isQrauthError(e) ? e.message : 'internal error';
        logDecision('error', 'begin', undefined, cause);
        return finalVerdict(Result.ERROR, `qrauth: ${cause}`);
      }
      if (devices.length === 0) {
        logDecision('no_device', 'begin');
        return finalVerdict(Result.NO_DEVICE, `qrauth: no phone is enrolled for ${msg.user} on this host; run 'qrauth enroll'.`);
      }
      const mode = deps.effectiveMode(msg);
      const ascii = msg.qr === QrStyle.ASCII || (mode === Mode.INFO && deps.asciiOnlyInfo(msg));
      // The usual UTF-8 QR comes ready-made from the pool; the rare ASCII one is rendered now.
      const prepared = deps.challenges.take();
      session = deps.sessions.create({
        user: msg.user,
        rhost: msg.rhost ?? '',
        service: msg.service,
        tty: msg.tty ?? '',
        loadDevices,
        secrets: { sid: prepared.sid, nonce: prepared.nonce },
      });
      const payload = prepared.payload;
      // ASCII at two characters a module: a quiet zone of 1 keeps a version 5 code within 80 columns.
      const qr = ascii ? renderQr(payload, 'ascii', 1) : { text: prepared.qrText };
      state = 'ready';
      // A session that ends while the user is not waiting (expiry) keeps the connection only
      // until the module next asks; a module that never asks is dropped after a grace period.
      session.once('verdict', () => {
        if (state !== 'waiting') setTimeout(() => sock.destroy(), 30_000).unref();
      });
      deps.log('challenge', { user: msg.user, rhost: msg.rhost || undefined, service: msg.service, sid: session.sid.slice(0, 8), mode: mode === Mode.INFO ? 'info' : 'prompt' });
      send({
        type: MsgType.CHALLENGE,
        // Leading newline: OpenSSH's client prefixes the first prompt line with "(user@host) ".
        qrText: `\n${qr.text}${payload}\n`,
        prompt: mode === Mode.INFO ? INFO_TEXT : PROMPT_TEXT,
        expires: Math.max(0, Math.round((session.expiresAt - Date.now()) / 1000)),
        mode,
        payload,
      });
    };

    const onWait = (maxWait: number | undefined) => {
      const s = session!;
      if (!s.pending) return sendSessionVerdict(s);
      if (!deps.relayUp()) {
        send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'The phone cannot reach this host right now; use the code from the app.' });
        return;
      }
      state = 'waiting';
      s.on('verdict', onVerdict);
      const onRelayChange = (up: boolean) => {
        if (!up && state === 'waiting') {
          stopWaiting();
          state = 'ready';
          send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'The link to the phone was lost; use the code from the app.' });
        }
      };
      this.relayWatchers.add(onRelayChange);
      unsubscribeRelay = () => this.relayWatchers.delete(onRelayChange);
      if (maxWait !== undefined) {
        waitTimer = setTimeout(() => {
          if (state !== 'waiting') return;
          stopWaiting();
          state = 'ready';
          send({ type: MsgType.VERDICT, result: Result.OFFLINE, message: 'No approval yet; you can type the code from the app.' });
        }, maxWait);
      }
    };

    const onCode = (digits: string) => {
      const s = session!;
      if (!s.pending) return sendSessionVerdict(s);
      const normal = normaliseCode(digits);
      const out = deps.sessions.checkCode(s, normal ?? '');
      if (out.ok || out.locked) return sendSessionVerdict(s);
      logDecision('code_wrong', 'code');
      send({ type: MsgType.VERDICT, result: Result.CODE_WRONG, triesLeft: out.triesLeft, message: `Wrong code, ${out.triesLeft} ${out.triesLeft === 1 ? 'try' : 'tries'} left.` });
    };

    const onMessage = (msg: FrameMsg) => {
      if (state === 'begin') {
        if (msg.type !== MsgType.BEGIN) return protocolError('first message was not BEGIN');
        return onBegin(msg);
      }
      if (state !== 'ready') return protocolError('message while a verdict is pending');
      if (msg.type === MsgType.WAIT) return onWait(msg.maxWait);
      if (msg.type === MsgType.CODE) return onCode(msg.digits);
      return protocolError(`unexpected message type ${msg.type}`);
    };

    sock.on('data', (chunk: Buffer) => {
      let msgs: FrameMsg[];
      try {
        msgs = decoder.push(chunk);
      } catch (e) {
        return protocolError(isQrauthError(e) ? e.message : 'bad frame');
      }
      armFrameTimer(msgs.length);
      for (const m of msgs) {
        if (sock.destroyed || state === 'done') break;
        onMessage(m);
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      if (frameTimer) clearTimeout(frameTimer);
      stopWaiting();
      this.connections.delete(sock);
      if (session?.pending) {
        session.finish({ state: 'cancelled', how: 'cancel' });
        logDecision('cancelled', 'cancel', undefined, 'the PAM client went away');
      }
    });
  }
}
