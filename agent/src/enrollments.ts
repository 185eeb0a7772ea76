/**
 * Open enrollments: a one-time token per `qrauth enroll`, valid for a few minutes, used once.
 * The token travels only in the enrollment QR; the relay sees its tokenId. The phone's signed
 * request proves it saw the token; the fingerprint lets both screens compare the keys.
 */
import { EventEmitter } from 'node:events';
import {
  QrauthError,
  enrollBytes,
  enrollFingerprint,
  fromB64url,
  keyId,
  tokenIdOf,
  type EnrollAck,
  type EnrollMessage,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { HostKey } from './host-key.js';
import type { Logger } from './log.js';

export const MAX_OPEN_ENROLLMENTS = 32;

export interface EnrollRequest {
  devicePub: string;
  deviceId: string;
  deviceName: string;
  fingerprint: string;
}

export class Enrollment extends EventEmitter {
  readonly token: Uint8Array;
  readonly tokenId: string;
  readonly expiresAt: number;
  readonly user: string;
  used = false;
  private timer: NodeJS.Timeout;

  constructor(user: string, seconds: number, private readonly onEnd: (e: Enrollment) => void) {
    super();
    this.user = user;
    this.token = nodeCrypto.randomBytes(16);
    this.tokenId = tokenIdOf(nodeCrypto, this.token);
    this.expiresAt = Date.now() + seconds * 1000;
    this.timer = setTimeout(() => this.end('expired'), seconds * 1000);
    this.timer.unref();
  }

  /** Close the enrollment; the token is wiped and can never be used again. */
  end(why: 'expired' | 'cancelled' | 'done'): void {
    clearTimeout(this.timer);
    this.used = true;
    this.token.fill(0);
    this.onEnd(this);
    this.emit('end', why);
  }
}

export class EnrollmentStore {
  private readonly open = new Map<string, Enrollment>();

  constructor(
    private readonly host: HostKey,
    private readonly hostname: string,
    private readonly seconds: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.open.size;
  }

  start(user: string): Enrollment {
    if (this.open.size >= MAX_OPEN_ENROLLMENTS) {
      throw new QrauthError('QRA_ERR_RATE_LIMITED', 'too many enrollments are open on this host; try again in a few minutes');
    }
    const e = new Enrollment(user, this.seconds, (x) => this.open.delete(x.tokenId));
    this.open.set(e.tokenId, e);
    this.log('enroll_open', { user, expires: Math.round(this.seconds) });
    return e;
  }

  /** A phone's enrollment request, from the relay. Verifies it and hands it to the waiting CLI. */
  handle(msg: EnrollMessage, now = Date.now()): EnrollAck {
    const fail = (cause: string): EnrollAck => {
      this.log('enroll_rejected', { device: msg.devicePub ? keyId(nodeCrypto, fromB64url(msg.devicePub, 32)) : undefined, cause });
      return { ok: false, code: 'QRA_ERR_ENROLL', message: cause };
    };
    if (msg.hostId !== this.host.hostId) return fail('this enrollment is for another host');
    const e = this.open.get(msg.tokenId);
    if (!e) return fail('unknown or already used enrollment code; run qrauth enroll again');
    if (e.used) return fail('this enrollment code was already used');
    if (now >= e.expiresAt) {
      e.end('expired');
      return fail('the enrollment code expired; run qrauth enroll again');
    }
    const devicePub = fromB64url(msg.devicePub, 32);
    const signed = enrollBytes({ hostId: this.host.hostId, tokenId: e.tokenId, token: e.token, devicePub: msg.devicePub, deviceName: msg.deviceName, time: msg.time });
    if (!nodeCrypto.ed25519Verify(devicePub, signed, fromB64url(msg.sig, 64))) {
      // A relay that swapped the key, or a phone that never saw the token: the token stays open.
      return fail('the enrollment signature does not verify (wrong code or a changed key)');
    }
    e.used = true;
    const req: EnrollRequest = {
      devicePub: msg.devicePub,
      deviceId: keyId(nodeCrypto, devicePub),
      deviceName: msg.deviceName,
      fingerprint: enrollFingerprint(nodeCrypto, this.host.publicKey, devicePub, e.token),
    };
    this.log('enroll_request', { user: e.user, device: req.deviceId, name: req.deviceName });
    e.emit('request', req);
    return { ok: true, hostname: this.hostname };
  }

  closeAll(): void {
    for (const e of [...this.open.values()]) e.end('cancelled');
  }
}
