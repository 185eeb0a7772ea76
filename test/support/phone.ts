/**
 * A headless phone for tests and demos: the same protocol steps as the app (enroll, fetch and
 * verify a login context, sign approve/deny, offline code), built only on protocol/ and
 * socket.io-client, with its keys in a state directory:
 *
 *   device.json  {"v":1,"seed":"<b64url 32>","name":"…"}                      (0600)
 *   hosts.json   {"<hostId>": {"hostPub":"<b64url>","hostname":"…","relayUrl":"http://…","fallbackRelayUrls":["http://…"]}}
 *
 * A host may have further relays (signed in its enrollment answer): when its relay cannot be
 * reached, or does not have the host, the phone asks the next one, the way the app does.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Socket, io } from 'socket.io-client';
import {
  arrayOf,
  contextAck,
  type DecisionAck,
  decisionAck,
  DEVICE_NAME_PATTERN,
  DEVICE_NAMESPACE,
  type DeviceClientToServer,
  type DeviceServerToClient,
  type EnrollAck,
  asErrorCode,
  fromB64url,
  keyId,
  type LeaseRevokeAck,
  leaseRevokeAck,
  type LeaseRevokeMessage,
  literal,
  makeAuthHandshake,
  MAX_FALLBACK_RELAYS,
  object,
  optional,
  offlineCode,
  offlineKey,
  parse,
  parseEnrollPayload,
  parseLoginPayload,
  type Check,
  QrauthError,
  signDecision,
  type SignedContext,
  signLeaseRevoke,
  signEnrollment,
  str,
  toB64url,
  verifyEnrollAck,
  verifyLoginContext,
  webauthnChallenge,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import { formatDeviceLine } from '../../agent/src/devices-file.js';
import type { SoftAuthenticator } from './soft-authenticator.js';

type DeviceSocket = Socket<DeviceServerToClient, DeviceClientToServer>;

export interface TrustedHost {
  /** base64url of the host's Ed25519 public key (43 characters) */
  hostPub: string;
  hostname: string;
  /** http(s) URL of the relay the host is connected to */
  relayUrl: string;
  /** The host's further relays, in its order of preference (from its signed enrollment answer). */
  fallbackRelayUrls?: string[];
}

export interface PhoneOptions {
  /**
   * How long to wait for the relay to connect, and then for each answer.
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Source address of the phone's relay connections (engine.io-client hands it to ws, then to
   * http.request), so tests can put phones on different loopback addresses. @default the OS's choice
   */
  localAddress?: string;
}

export interface EnrollResult {
  hostId: string;
  /** What this screen shows; the host's screen must show the same before the user confirms. */
  fingerprint: string;
  ack: EnrollAck;
}

const DEVICE_FILE = 'device.json';
const HOSTS_FILE = 'hosts.json';

const deviceFile = object({
  v: literal(1),
  seed: str({ min: 43, max: 43, pattern: /^[A-Za-z0-9_-]{43}$/ }),
  name: str({ min: 1, max: 64, pattern: DEVICE_NAME_PATTERN }),
});
const trustedHost = object({
  hostPub: str({ min: 43, max: 43, pattern: /^[A-Za-z0-9_-]{43}$/ }),
  hostname: str({ max: 253 }),
  relayUrl: str({ max: 300, pattern: /^https?:\/\/\S+$/ }),
  fallbackRelayUrls: optional(arrayOf(str({ max: 300, pattern: /^https?:\/\/\S+$/ }), MAX_FALLBACK_RELAYS)),
});

async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}

export class HeadlessPhone {
  readonly stateDir: string;
  readonly name: string;
  /** deviceId: base64url(SHA-256(public key)[0..16]) */
  readonly deviceId: string;
  /** base64url of the device's Ed25519 public key */
  readonly publicKey: string;
  readonly #seed: Uint8Array;
  readonly #hosts: Map<string, TrustedHost>;
  readonly #timeoutMs: number;
  readonly #localAddress: string | undefined;
  readonly #sockets = new Map<string, DeviceSocket>();
  readonly #lastRelay = new Map<string, string>();
  /**
   * The phone's passkey (issue #12): when set, every approval carries its assertion over the
   * approval bytes, and devicesLine() lists it. Unset: a phone enrolled without a passkey.
   */
  authenticator: SoftAuthenticator | undefined;
  /** Whether the person passes the phone's fingerprint/PIN prompt (the assertion's UV flag). */
  userVerification = true;

  private constructor(stateDir: string, seed: Uint8Array, name: string, hosts: Map<string, TrustedHost>, opts: PhoneOptions) {
    this.stateDir = stateDir;
    this.name = name;
    this.#seed = seed;
    this.#hosts = hosts;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#localAddress = opts.localAddress;
    const pub = nodeCrypto.ed25519FromSeed(seed).publicKey;
    this.publicKey = toB64url(pub);
    this.deviceId = keyId(nodeCrypto, pub);
  }

  /** Makes a new device key in `stateDir` (created 0700 if missing); refuses to overwrite one. */
  static async create(stateDir: string, name: string, opts: PhoneOptions = {}): Promise<HeadlessPhone> {
    if (!DEVICE_NAME_PATTERN.test(name)) {
      throw new QrauthError('QRA_ERR_INVALID_INPUT', 'a device name is 1-64 letters, digits, spaces or ._\'()+-');
    }
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const seed = nodeCrypto.randomBytes(32);
    const text = `${JSON.stringify({ v: 1, seed: toB64url(seed), name })}\n`;
    try {
      await writeFile(path.join(stateDir, DEVICE_FILE), text, { mode: 0o600, flag: 'wx' });
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new QrauthError('QRA_ERR_CONFIG', `${path.join(stateDir, DEVICE_FILE)} already exists; use another --state directory`, { cause });
      }
      throw cause;
    }
    return new HeadlessPhone(stateDir, seed, name, new Map(), opts);
  }

  /** Loads the device key and the trusted hosts from `stateDir`. */
  static async load(stateDir: string, opts: PhoneOptions = {}): Promise<HeadlessPhone> {
    let dev: { seed: string; name: string };
    try {
      dev = parse(deviceFile, JSON.parse(await readFile(path.join(stateDir, DEVICE_FILE), 'utf8')), DEVICE_FILE);
    } catch (cause) {
      throw new QrauthError('QRA_ERR_CONFIG', `cannot load ${path.join(stateDir, DEVICE_FILE)} (${(cause as Error).message}); run keygen first`, { cause });
    }
    const hosts = new Map<string, TrustedHost>();
    let raw: unknown = {};
    try {
      raw = JSON.parse(await readFile(path.join(stateDir, HOSTS_FILE), 'utf8'));
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new QrauthError('QRA_ERR_CONFIG', `cannot read ${HOSTS_FILE}: ${(cause as Error).message}`, { cause });
      }
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new QrauthError('QRA_ERR_CONFIG', `${HOSTS_FILE}: expected an object`);
    for (const [hostId, h] of Object.entries(raw)) {
      const host = parse(trustedHost, h, `${HOSTS_FILE}.${hostId.slice(0, 22)}`);
      if (keyId(nodeCrypto, fromB64url(host.hostPub, 32)) !== hostId) {
        throw new QrauthError('QRA_ERR_CONFIG', `${HOSTS_FILE}: ${hostId.slice(0, 22)} is not the id of its hostPub`);
      }
      hosts.set(hostId, host);
    }
    return new HeadlessPhone(stateDir, fromB64url(dev.seed, 32), dev.name, hosts, opts);
  }

  /** Remembers a host (what enrollment does); returns its hostId. */
  async trustHost(host: TrustedHost): Promise<string> {
    const h = parse(trustedHost, host, 'host');
    const hostId = keyId(nodeCrypto, fromB64url(h.hostPub, 32));
    const fallbacks = (h.fallbackRelayUrls ?? []).map((u) => u.replace(/\/$/, ''));
    this.#hosts.set(hostId, { hostPub: h.hostPub, hostname: h.hostname, relayUrl: h.relayUrl.replace(/\/$/, ''), ...(fallbacks.length ? { fallbackRelayUrls: fallbacks } : {}) });
    await writePrivate(path.join(this.stateDir, HOSTS_FILE), `${JSON.stringify(Object.fromEntries(this.#hosts), null, 2)}\n`);
    return hostId;
  }

  get hosts(): ReadonlyMap<string, TrustedHost> {
    return this.#hosts;
  }

  /** This device as a line of a devices file (docs/protocol.md §4). */
  devicesLine(date: Date = new Date()): string {
    const enrolled = date.toISOString().slice(0, 10);
    if (this.authenticator) return formatDeviceLine({ publicKey: fromB64url(this.publicKey), enrolled, name: this.name, passkey: this.authenticator.passkey() });
    return `ed25519 ${this.publicKey} ${enrolled} ${this.name}`;
  }

  /**
   * Asks the host (through its relay) for the context of the login in `qrText` and verifies the
   * host's signature with the key stored at enrollment. Sends nothing for an unknown host.
   */
  async fetchContext(qrText: string): Promise<SignedContext> {
    return (await this.#contextVia(qrText)).context;
  }

  /** The relay the last request for a host went through (its first relay until one fails). */
  relayUsedFor(hostId: string): string | undefined {
    return this.#lastRelay.get(hostId);
  }

  /**
   * The verified context, and the connection that reached the host. The host's relays are asked
   * in order: the next one when a relay cannot be reached, or answers that the host is not on it.
   */
  async #contextVia(qrText: string): Promise<{ context: SignedContext; socket: DeviceSocket }> {
    const { hostId, sid } = parseLoginPayload(qrText);
    const host = this.#trusted(hostId);
    const relays = [host.relayUrl, ...(host.fallbackRelayUrls ?? [])];
    for (const [i, relayUrl] of relays.entries()) {
      const last = i === relays.length - 1;
      let socket: DeviceSocket;
      try {
        socket = await this.#connect(relayUrl, !last);
      } catch (e) {
        if (!last && (e as QrauthError).code === 'QRA_ERR_HOST_OFFLINE') continue;
        throw e;
      }
      const raw: unknown = await this.#ask(() => socket.timeout(this.#timeoutMs).emitWithAck('context', { hostId, sid }));
      const ack = this.#check(contextAck, raw, 'context ack');
      if (!ack.ok && ack.code === 'QRA_ERR_HOST_OFFLINE' && !last) continue;
      if (!ack.ok) throw new QrauthError(asErrorCode(ack.code), ack.message);
      this.#lastRelay.set(hostId, relayUrl);
      const context = verifyLoginContext(nodeCrypto, ack.context, { hostId, sid, hostPub: fromB64url(host.hostPub, 32), hostname: host.hostname });
      return { context, socket };
    }
    throw new QrauthError('QRA_ERR_HOST_OFFLINE', 'this host has no relay; enroll again');
  }

  /**
   * Verifies the context, then signs and sends the decision. `onContext` sees the verified
   * context before anything is signed (what a person reads before tapping).
   */
  async decide(
    qrText: string,
    decision: 'approve' | 'deny',
    onContext?: (ctx: SignedContext) => void,
    /** "Approve for … from this key": one of the durations the context offers (seconds). */
    leaseSeconds?: number,
  ): Promise<DecisionAck> {
    const login = parseLoginPayload(qrText);
    // The decision goes where the context came from: that relay reached the host.
    const { context: ctx, socket } = await this.#contextVia(qrText);
    onContext?.(ctx);
    const signed = signDecision(nodeCrypto, this.#seed, this.deviceId, login, ctx, decision, Date.now(), leaseSeconds);
    // The app asks its authenticator only to approve: anybody holding the phone may refuse a login.
    const msg =
      this.authenticator && decision === 'approve'
        ? {
            ...signed,
            assertion: this.authenticator.assert({
              challenge: webauthnChallenge(nodeCrypto, { hostId: login.hostId, sid: login.sid, nonce: login.nonce, user: ctx.user, decision, time: signed.time, deviceId: this.deviceId, lease: signed.lease }),
              uv: this.userVerification,
            }),
          }
        : signed;
    const raw: unknown = await this.#ask(() => socket.timeout(this.#timeoutMs).emitWithAck('decision', msg));
    return this.#check(decisionAck, raw, 'decision ack');
  }

  /** The signed request to end this phone's lease `leaseId` ('*': all of them) on a host; sends nothing. */
  signLeaseRevoke(hostId: string, leaseId = '*', time: number = Date.now()): LeaseRevokeMessage {
    return signLeaseRevoke(nodeCrypto, this.#seed, this.deviceId, hostId, leaseId, time);
  }

  /** Sends a lease revoke (made by signLeaseRevoke, or given as is) through the host's relay. */
  async sendLeaseRevoke(msg: LeaseRevokeMessage): Promise<LeaseRevokeAck> {
    const host = this.#trusted(msg.hostId);
    const socket = await this.#connect(this.#lastRelay.get(msg.hostId) ?? host.relayUrl);
    const raw: unknown = await this.#ask(() => socket.timeout(this.#timeoutMs).emitWithAck('revokeLeases', msg));
    return this.#check(leaseRevokeAck, raw, 'revokeLeases ack');
  }

  /** Ends this phone's lease `leaseId` ('*': all of them) on a host: what the app's "End" button does. */
  async revokeLeases(hostId: string, leaseId = '*'): Promise<LeaseRevokeAck> {
    return this.sendLeaseRevoke(this.signLeaseRevoke(hostId, leaseId));
  }

  /** The 8-digit code to type when the phone is offline; uses no network. */
  offlineCode(qrText: string): string {
    const { hostId, sid, nonce } = parseLoginPayload(qrText);
    const host = this.#trusted(hostId);
    const k = offlineKey(nodeCrypto, this.#seed, fromB64url(host.hostPub, 32), hostId, this.deviceId);
    try {
      return offlineCode(nodeCrypto, k, hostId, sid, nonce);
    } finally {
      k.fill(0);
    }
  }

  /**
   * Enrolls with the host of an enrollment QR; trusts the host only when it accepts, and stores
   * the name and relay URL the host signed. An acceptance the host did not sign (made up or
   * changed by the relay) throws QRA_ERR_SIGNATURE and nothing is saved.
   */
  async enroll(qrText: string): Promise<EnrollResult> {
    const p = parseEnrollPayload(qrText);
    // With an authenticator, its passkey goes along, signed (what the app does when the phone has one).
    const device = { publicKey: this.publicKey, name: this.name, passkey: this.authenticator?.passkey() };
    const { msg, hostId, fingerprint } = signEnrollment(nodeCrypto, this.#seed, device, p);
    const socket = await this.#connect(p.relayUrl);
    const raw: unknown = await this.#ask(() => socket.timeout(this.#timeoutMs).emitWithAck('enroll', msg));
    const ack = verifyEnrollAck(nodeCrypto, raw, msg, p.hostPub);
    if (ack.ok) {
      const fallbacks = ack.fallbackRelayUrls ? { fallbackRelayUrls: ack.fallbackRelayUrls } : {};
      await this.trustHost({ hostPub: toB64url(p.hostPub), hostname: ack.hostname, relayUrl: ack.relayUrl, ...fallbacks });
    }
    return { hostId, fingerprint, ack };
  }

  /** Closes every relay connection. */
  async close(): Promise<void> {
    for (const s of this.#sockets.values()) s.disconnect();
    this.#sockets.clear();
  }

  #trusted(hostId: string): TrustedHost {
    const host = this.#hosts.get(hostId);
    if (!host) {
      throw new QrauthError('QRA_ERR_UNKNOWN_HOST', 'this QR belongs to a host this phone has not enrolled with; enroll first (qrauth enroll on that host)');
    }
    return host;
  }

  #check<T>(check: Check<T>, raw: unknown, what: string): T {
    try {
      return parse(check, raw, what);
    } catch (cause) {
      throw new QrauthError('QRA_ERR_INVALID_INPUT', `the relay sent an invalid ${what}: ${(cause as Error).message}`, { cause });
    }
  }

  async #ask<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (cause) {
      throw new QrauthError('QRA_ERR_HOST_OFFLINE', `no answer from the relay within ${this.#timeoutMs / 1000} s; check the network and try again`, {
        cause,
      });
    }
  }

  /**
   * One connection per relay URL, reused; a fresh signed handshake on every (re)connect.
   * `failFast`: a network error ends the wait at once (another relay is left to try).
   */
  async #connect(relayUrl: string, failFast = false): Promise<DeviceSocket> {
    let socket = this.#sockets.get(relayUrl);
    if (socket?.connected) return socket;
    if (!socket) {
      socket = io(`${relayUrl}${DEVICE_NAMESPACE}`, {
        auth: (cb) => cb(makeAuthHandshake(nodeCrypto, 'device', this.#seed, Date.now(), relayUrl)),
        transports: ['websocket'],
        forceNew: true,
        timeout: this.#timeoutMs,
        // Not in socket.io-client's option types, but passed through to the websocket transport.
        ...({ localAddress: this.#localAddress } as object),
      }) as DeviceSocket;
      this.#sockets.set(relayUrl, socket);
    } else if (!socket.active) {
      socket.connect(); // the relay refused the last handshake: try once more with a fresh one
    }
    const s = socket;
    try {
      await new Promise<void>((resolve, reject) => {
        let lastError = 'no answer';
        const done = (err?: Error) => {
          clearTimeout(timer);
          s.off('connect', onConnect);
          s.off('connect_error', onError);
          if (err) reject(err);
          else resolve();
        };
        const onConnect = () => done();
        const onError = (err: Error & { data?: { code?: unknown; message?: unknown } }) => {
          lastError = err.message;
          // Refused by the relay (handshake middleware): it will not get better by retrying.
          if (!s.active) {
            const code = typeof err.data?.code === 'string' ? asErrorCode(err.data.code) : 'QRA_ERR_UNAUTHENTICATED';
            done(new QrauthError(code, `the relay refused this phone: ${err.message}`));
          } else if (failFast) {
            done(new QrauthError('QRA_ERR_HOST_OFFLINE', `cannot reach the relay at ${relayUrl} (${err.message})`));
          }
        };
        const timer = setTimeout(
          () => done(new QrauthError('QRA_ERR_HOST_OFFLINE', `cannot reach the relay at ${relayUrl} (${lastError}); check the network and try again`)),
          this.#timeoutMs,
        );
        s.on('connect', onConnect);
        s.on('connect_error', onError);
      });
    } catch (e) {
      s.disconnect();
      this.#sockets.delete(relayUrl);
      throw e;
    }
    return s;
  }
}
