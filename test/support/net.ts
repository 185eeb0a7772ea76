/**
 * Network helpers for relay and phone tests: raw Socket.IO clients with a chosen handshake, and
 * a fake host agent (a real host key on /host that answers `context` and `decision` like the
 * agent does, with hooks to misbehave).
 */
import { type Socket, io } from 'socket.io-client';
import {
  type AuthHandshake,
  type ContextAck,
  type DecisionAck,
  type DecisionMessage,
  DEVICE_NAMESPACE,
  type EnrollAck,
  type EnrollMessage,
  HOST_NAMESPACE,
  type HostServerToClient,
  type SignedContext,
  contextBytes,
  decisionBytes,
  decisionMessage,
  enrollAckBytes,
  formatLoginPayload,
  fromB64url,
  keyId,
  makeAuthHandshake,
  parse,
  toB64url,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';

export type ConnectResult = { ok: true; socket: Socket } | { ok: false; message: string; code: string | undefined };

/**
 * Connects once (no retries) and reports how the relay answered the handshake. `headers` go on
 * the WebSocket upgrade, e.g. the Origin a browser would send.
 */
export function tryConnect(baseUrl: string, namespace: string, auth: object | undefined, timeoutMs = 3000, headers?: Record<string, string>): Promise<ConnectResult> {
  const socket = io(`${baseUrl}${namespace}`, {
    ...(auth ? { auth } : {}),
    ...(headers ? { extraHeaders: headers } : {}),
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: timeoutMs,
  });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ ok: true, socket }));
    socket.once('connect_error', (err: Error & { data?: { code?: string } }) => {
      socket.disconnect();
      resolve({ ok: false, message: err.message, code: err.data?.code });
    });
  });
}

/** A connected device socket, or throws with the relay's reason. */
export async function connectDevice(baseUrl: string, seed: Uint8Array = nodeCrypto.randomBytes(32)): Promise<Socket> {
  const r = await tryConnect(baseUrl, DEVICE_NAMESPACE, makeAuthHandshake(nodeCrypto, 'device', seed, Date.now(), baseUrl));
  if (!r.ok) throw new Error(`device refused: ${r.code} ${r.message}`);
  return r.socket;
}

/** Waits for a socket's (possibly never coming) disconnect. */
export function disconnected(socket: Socket, timeoutMs = 3000): Promise<boolean> {
  if (!socket.connected) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), timeoutMs);
    socket.once('disconnect', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export interface Login {
  sid: string;
  nonce: Uint8Array;
  qrText: string;
  user: string;
  hostname: string;
  rhost: string;
  service: string;
  iat: number;
  exp: number;
}

export interface FakeHostOptions {
  seed?: Uint8Array;
  hostname?: string;
  /** Handshake to send instead of a correct one (tests of the relay's checks). */
  auth?: AuthHandshake;
}

/**
 * Plays the agent: answers `context` with a context signed by its host key and `decision` by
 * checking the device signature and nonce like the agent (single use). Replace `onContext` or
 * `onDecision` to make it misbehave.
 */
export class FakeHost {
  readonly seed: Uint8Array;
  readonly hostPub: string;
  readonly hostId: string;
  readonly hostname: string;
  readonly logins = new Map<string, Login>();
  /** Devices allowed to decide: deviceId → public key. */
  readonly devices = new Map<string, Uint8Array>();
  readonly received: { context: { sid: string }[]; decision: unknown[]; enroll: unknown[] } = { context: [], decision: [], enroll: [] };
  onContext: (req: { sid: string }) => unknown = (req) => this.contextAckFor(req.sid);
  onDecision: (msg: unknown) => unknown = (msg) => this.checkDecision(msg);
  onEnroll: (msg: unknown) => unknown = (msg) => this.acceptEnroll(msg as EnrollMessage);
  /** The relay this host is connected to (what it signs into an enrollment acceptance). */
  relayUrl = '';
  socket!: Socket<HostServerToClient, Record<string, never>>;

  constructor(opts: FakeHostOptions = {}) {
    this.seed = opts.seed ?? nodeCrypto.randomBytes(32);
    const pub = nodeCrypto.ed25519FromSeed(this.seed).publicKey;
    this.hostPub = toB64url(pub);
    this.hostId = keyId(nodeCrypto, pub);
    this.hostname = opts.hostname ?? 'web-01';
  }

  static async connect(relayUrl: string, opts: FakeHostOptions = {}): Promise<FakeHost> {
    const host = new FakeHost(opts);
    host.relayUrl = relayUrl;
    const r = await tryConnect(relayUrl, HOST_NAMESPACE, opts.auth ?? makeAuthHandshake(nodeCrypto, 'host', host.seed, Date.now(), relayUrl));
    if (!r.ok) throw new Error(`host refused: ${r.code} ${r.message}`);
    host.socket = r.socket as Socket<HostServerToClient, Record<string, never>>;
    // Arguments are typed by the event map; a fake host answers whatever its hook returns.
    host.socket.on('context', (req, ack) => {
      host.received.context.push(req);
      (ack as (a: unknown) => void)(host.onContext(req));
    });
    host.socket.on('decision', (msg, ack) => {
      host.received.decision.push(msg);
      (ack as (a: unknown) => void)(host.onDecision(msg));
    });
    host.socket.on('enroll', (msg, ack) => {
      host.received.enroll.push(msg);
      (ack as (a: unknown) => void)(host.onEnroll(msg));
    });
    return host;
  }

  /** Accepts an enrollment as the agent does: signed, so the phone stores what this host said. */
  acceptEnroll(msg: EnrollMessage): EnrollAck {
    const fields = { hostId: this.hostId, tokenId: msg.tokenId, devicePub: msg.devicePub, hostname: this.hostname, relayUrl: this.relayUrl };
    return { ok: true, hostname: this.hostname, relayUrl: this.relayUrl, sig: toB64url(nodeCrypto.ed25519Sign(this.seed, enrollAckBytes(fields))) };
  }

  /** Starts a login like the agent's BEGIN; `ttlS` may be negative for an expired one. */
  newLogin(opts: { user?: string; rhost?: string; service?: string; ttlS?: number } = {}): Login {
    const sid = toB64url(nodeCrypto.randomBytes(16));
    const nonce = nodeCrypto.randomBytes(16);
    const iat = Math.floor(Date.now() / 1000);
    const login: Login = {
      sid,
      nonce,
      qrText: formatLoginPayload({ hostId: this.hostId, sid, nonce }),
      user: opts.user ?? 'alice',
      hostname: this.hostname,
      rhost: opts.rhost ?? '127.0.0.1',
      service: opts.service ?? 'sshd',
      iat,
      exp: iat + (opts.ttlS ?? 90),
    };
    this.logins.set(sid, login);
    return login;
  }

  /** The context of a login, signed with `seed` (the host key unless a test forges one). */
  signedContext(sid: string, seed: Uint8Array = this.seed): SignedContext {
    const l = this.logins.get(sid);
    if (!l) throw new Error('no such login');
    const fields = { hostId: this.hostId, sid, user: l.user, hostname: l.hostname, rhost: l.rhost, service: l.service, iat: l.iat, exp: l.exp };
    return { v: 1, ...fields, sig: toB64url(nodeCrypto.ed25519Sign(seed, contextBytes(fields))) };
  }

  contextAckFor(sid: string): ContextAck {
    if (!this.logins.has(sid)) return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'no such login' };
    return { ok: true, context: this.signedContext(sid) };
  }

  /** What the agent checks: enrolled device, valid signature over the nonce, not expired, single use. */
  checkDecision(raw: unknown): DecisionAck {
    let msg: DecisionMessage;
    try {
      msg = parse(decisionMessage, raw, 'decision');
    } catch {
      return { ok: false, code: 'QRA_ERR_INVALID_INPUT', message: 'bad decision' };
    }
    const l = this.logins.get(msg.sid);
    if (!l) return { ok: false, code: 'QRA_ERR_UNKNOWN_SESSION', message: 'no such login' };
    const pub = this.devices.get(msg.deviceId);
    if (!pub) return { ok: false, code: 'QRA_ERR_NOT_ENROLLED', message: 'device not enrolled' };
    const bytes = decisionBytes({ hostId: this.hostId, sid: msg.sid, nonce: l.nonce, user: l.user, decision: msg.decision, time: msg.time, deviceId: msg.deviceId });
    if (!nodeCrypto.ed25519Verify(pub, bytes, fromB64url(msg.sig, 64))) return { ok: false, code: 'QRA_ERR_SIGNATURE', message: 'bad signature' };
    this.logins.delete(msg.sid);
    return { ok: true, result: msg.decision === 'approve' ? 'approved' : 'denied' };
  }

  enrollDevice(devicePub: string): void {
    const pub = fromB64url(devicePub, 32);
    this.devices.set(keyId(nodeCrypto, pub), pub);
  }

  close(): void {
    this.socket?.disconnect();
  }
}

/** Resolves when `predicate` holds, polling; rejects after `timeoutMs`. */
export async function eventually(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
