/**
 * Open enrollments: a one-time token per `qrauth enroll`, valid for a few minutes, used once.
 * The token travels only in the enrollment QR; the relay sees its tokenId. The phone's signed
 * request proves it saw the token; the fingerprint lets both screens compare the keys.
 */
import { EventEmitter } from 'node:events';
import { isUsableDeviceKey } from './devices-file.js';
import { parsePasskey } from './webauthn.js';
import {
  QrauthError,
  enrollAckBytes,
  enrollBytes,
  enrollOutcomeBytes,
  enrollFingerprint,
  fromB64url,
  keyId,
  toB64url,
  tokenIdOf,
  type EnrollAck,
  type EnrollMessage,
  type EnrollOutcome,
  type PasskeyInfo,
} from '../../protocol/src/index.js';
import { timingSafeEqual } from 'node:crypto';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { HostKey } from './host-key.js';
import type { Logger } from './log.js';

export const MAX_OPEN_ENROLLMENTS = 32;
/** Open enrollments one non-root caller may hold, and all non-root callers together (root keeps the rest). */
export const MAX_OPEN_ENROLLMENTS_PER_UID = 4;
export const MAX_OPEN_ENROLLMENTS_NON_ROOT = 24;
/** How long, and for how many enrollments, the terminal's answer stays available to the phone that asked. */
export const OUTCOME_MEMORY_MS = 10 * 60_000;
export const MAX_REMEMBERED_OUTCOMES = 64;

export interface EnrollRequest {
  devicePub: string;
  deviceId: string;
  deviceName: string;
  fingerprint: string;
  /** The phone's passkey, verified usable and covered by its signature and the fingerprint. */
  passkey?: PasskeyInfo;
}

export class Enrollment extends EventEmitter {
  readonly token: Uint8Array;
  readonly tokenId: string;
  readonly expiresAt: number;
  readonly user: string;
  /** The uid that opened it (for the per-uid cap). */
  byUid = 0;
  used = false;
  /** The terminal's answer to the phone's request; 'pending' until the CLI says (or goes away). */
  outcome: EnrollOutcome = 'pending';
  /** The accepted request's key and signature: the same message again asks for the outcome. */
  requestedBy: { devicePub: string; sig: Uint8Array } | null = null;
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

  /** The terminal answered (`y` and the devices file written, or not): the outcome the phone learns. */
  settle(accepted: boolean): void {
    if (this.requestedBy && this.outcome === 'pending') this.outcome = accepted ? 'confirmed' : 'refused';
    this.end('done');
  }

  /** Close the enrollment; the token is wiped and can never be used again. */
  end(why: 'expired' | 'cancelled' | 'done'): void {
    clearTimeout(this.timer);
    // The CLI went away after a request without answering: nothing was written. Expiry alone
    // decides nothing, since the CLI may still be asking the person (it writes before it answers).
    if (this.requestedBy && this.outcome === 'pending' && why !== 'expired') this.outcome = 'refused';
    this.used = true;
    this.token.fill(0);
    this.onEnd(this);
    this.emit('end', why);
  }
}

export class EnrollmentStore {
  private readonly open = new Map<string, Enrollment>();
  /** Enrollments a phone asked for, by tokenId, kept after they end so that phone can learn the answer. */
  private readonly requested = new Map<string, { e: Enrollment; until: number }>();

  constructor(
    private readonly host: HostKey,
    private readonly hostname: string,
    private readonly seconds: number,
    private readonly log: Logger,
    /** The relay phones reach this host through; signed into the acceptance, which phones store. */
    private readonly relayUrl: string | null = null,
    /** The host's further relays, preferred first; signed into the acceptance too, so phones can fail over. */
    private readonly fallbackRelayUrls: readonly string[] = [],
  ) {}

  get size(): number {
    return this.open.size;
  }

  /** `byUid`: who asked (control-server.ts proves it); one uid cannot take every slot. */
  start(user: string, byUid = 0): Enrollment {
    if (byUid !== 0) {
      const open = [...this.open.values()];
      if (open.filter((x) => x.byUid === byUid).length >= MAX_OPEN_ENROLLMENTS_PER_UID) {
        throw new QrauthError('QRA_ERR_RATE_LIMITED', `you already have ${MAX_OPEN_ENROLLMENTS_PER_UID} enrollments open; finish or cancel one (Ctrl-C) first`);
      }
      if (open.filter((x) => x.byUid !== 0).length >= MAX_OPEN_ENROLLMENTS_NON_ROOT) {
        throw new QrauthError('QRA_ERR_RATE_LIMITED', 'too many enrollments are open on this host; try again in a few minutes');
      }
    }
    if (this.open.size >= MAX_OPEN_ENROLLMENTS) {
      throw new QrauthError('QRA_ERR_RATE_LIMITED', 'too many enrollments are open on this host; try again in a few minutes');
    }
    const e = new Enrollment(user, this.seconds, (x) => this.open.delete(x.tokenId));
    e.byUid = byUid;
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
    if (!this.relayUrl) return fail('no relay is configured on this host');
    const asked = this.outcomeQuery(msg, now);
    if (asked) return this.acceptance(asked, msg.devicePub);
    const e = this.open.get(msg.tokenId);
    if (!e) return fail('unknown or already used enrollment code; run qrauth enroll again');
    if (e.used) return fail('this enrollment code was already used');
    if (now >= e.expiresAt) {
      e.end('expired');
      return fail('the enrollment code expired; run qrauth enroll again');
    }
    const devicePub = fromB64url(msg.devicePub, 32);
    // The same check the devices file makes: a key it would skip is never written there.
    if (!isUsableDeviceKey(devicePub)) return fail('the device key is not a usable Ed25519 public key');
    if (msg.passkey) {
      // The check the devices file makes when it reads the line back: never write a passkey it would skip.
      const usable = parsePasskey(msg.passkey);
      if ('problem' in usable) return fail(`the phone's passkey cannot be used: ${usable.problem}`);
    }
    const signed = enrollBytes({ hostId: this.host.hostId, tokenId: e.tokenId, token: e.token, devicePub: msg.devicePub, deviceName: msg.deviceName, time: msg.time, passkey: msg.passkey });
    if (!nodeCrypto.ed25519Verify(devicePub, signed, fromB64url(msg.sig, 64))) {
      // A relay that swapped the key, or a phone that never saw the token: the token stays open.
      return fail('the enrollment signature does not verify (wrong code or a changed key)');
    }
    e.used = true;
    e.requestedBy = { devicePub: msg.devicePub, sig: fromB64url(msg.sig, 64) };
    this.remember(e, now);
    const req: EnrollRequest = {
      devicePub: msg.devicePub,
      deviceId: keyId(nodeCrypto, devicePub),
      deviceName: msg.deviceName,
      fingerprint: enrollFingerprint(nodeCrypto, this.host.publicKey, devicePub, e.token, msg.passkey),
      ...(msg.passkey ? { passkey: msg.passkey } : {}),
    };
    this.log('enroll_request', { user: e.user, device: req.deviceId, name: req.deviceName, passkey: msg.passkey ? 'yes' : 'no' });
    e.emit('request', req);
    return this.acceptance(e, msg.devicePub);
  }

  /**
   * The enrollment `msg` asks about when it repeats, byte for byte, a request already accepted
   * (the phone polling for the terminal's answer); else null. The first one was verified, so an
   * identical one is the same phone's (or a replay by the relay, which learns nothing it could not see).
   */
  private outcomeQuery(msg: EnrollMessage, now: number): Enrollment | null {
    for (const [id, r] of this.requested) if (r.until <= now) this.requested.delete(id);
    const e = this.requested.get(msg.tokenId)?.e;
    if (!e?.requestedBy || e.requestedBy.devicePub !== msg.devicePub) return null;
    let sig: Uint8Array;
    try {
      sig = fromB64url(msg.sig, 64);
    } catch {
      return null;
    }
    return timingSafeEqual(sig, e.requestedBy.sig) ? e : null;
  }

  private remember(e: Enrollment, now: number): void {
    this.requested.set(e.tokenId, { e, until: now + OUTCOME_MEMORY_MS });
    // Oldest first (insertion order): a flood of enrollments forgets the oldest answers, never grows.
    while (this.requested.size > MAX_REMEMBERED_OUTCOMES) this.requested.delete(this.requested.keys().next().value!);
  }

  /** The signed acceptance, with the terminal's answer so far (signed once it is final). */
  private acceptance(e: Enrollment, devicePub: string): EnrollAck {
    const relayUrl = this.relayUrl ?? '';
    // Signed, so the phone can tell this acceptance (and the name and relay it stores) from a relay's.
    // One relay: no list at all, so the answer is the v1 one every phone understands.
    const fallbacks = this.fallbackRelayUrls.length > 0 ? { fallbackRelayUrls: [...this.fallbackRelayUrls] } : {};
    const ackFields = { hostId: this.host.hostId, tokenId: e.tokenId, devicePub, hostname: this.hostname, relayUrl, ...fallbacks };
    const sig = toB64url(this.host.sign(enrollAckBytes(ackFields)));
    if (e.outcome === 'pending') return { ok: true, hostname: this.hostname, relayUrl, ...fallbacks, sig, outcome: 'pending' };
    const outcomeSig = toB64url(this.host.sign(enrollOutcomeBytes({ hostId: this.host.hostId, tokenId: e.tokenId, devicePub, outcome: e.outcome })));
    return { ok: true, hostname: this.hostname, relayUrl, ...fallbacks, sig, outcome: e.outcome, outcomeSig };
  }

  closeAll(): void {
    for (const e of [...this.open.values()]) e.end('cancelled');
  }
}
