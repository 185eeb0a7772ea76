/**
 * Leases: "approve for 1 h from this key on this host". A phone grants one in its signed
 * decision; later logins of the same user on the same PAM service whose sshd-verified key has
 * the same fingerprint are approved without a QR until it expires (docs/protocol.md §Leases).
 *
 * Kept in <stateDir>/leases.json, 0600, written atomically (state-file.ts) before the
 * approving verdict goes out, so a restart keeps every lease it granted. The file is checked
 * (state-file.ts: no symlink, ours, not group/world-writable, bounded) and validated on load; one
 * that fails is set aside as leases.json.invalid and no lease from it is honoured (fail closed:
 * the users scan again).
 */
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import {
  ID_PATTERN,
  KEY_FP_PATTERN,
  MAX_LEASE_SECONDS,
  arrayOf,
  int,
  literal,
  object,
  parse,
  str,
  toB64url,
  fromB64url,
  leaseRevokeAckBytes,
  leaseRevokeBytes,
  type LeaseRevokeAck,
  type LeaseRevokeMessage,
} from '../../protocol/src/index.js';
import { nodeCrypto } from '../../protocol/src/crypto-node.js';
import type { Logger } from './log.js';
import { readStateJson, writeStateFileAtomic } from './state-file.js';

export interface Lease {
  /** Random, public: names the lease for `qrauth leases revoke` and the phone. */
  id: string;
  user: string;
  service: string;
  host: string;
  keyFp: string;
  deviceId: string;
  deviceName: string;
  /** Unix seconds. */
  granted: number;
  expires: number;
}

/** Leases a host keeps at most; the oldest go first (each is a user's approval: bound it). */
export const MAX_LEASES = 10_000;
/** The durations a phone may choose from, shortest first; the host offers those ≤ maxLeaseSeconds. */
export const STANDARD_LEASES = [15 * 60, 3600, 8 * 3600] as const;

const id = str({ max: 22, min: 22, pattern: ID_PATTERN });
const leaseSchema = object({
  id,
  user: str({ max: 256, min: 1 }),
  service: str({ max: 64, min: 1 }),
  host: str({ max: 253 }),
  keyFp: str({ max: 50, min: 50, pattern: KEY_FP_PATTERN }),
  deviceId: id,
  deviceName: str({ max: 64 }),
  granted: int({ min: 0, max: 2 ** 40 }),
  expires: int({ min: 0, max: 2 ** 40 }),
});
const fileSchema = object({ v: literal(1), leases: arrayOf(leaseSchema, MAX_LEASES) });
/** Above the largest file MAX_LEASES leases can make (every string at its longest, escaped): a bigger one is not ours. */
const MAX_LEASE_FILE_BYTES = 64 << 20;

/** The durations to offer under a host's maximum: the standard ones that fit, and the maximum itself. */
export function leaseOffer(maxLeaseSeconds: number): number[] {
  if (maxLeaseSeconds <= 0) return [];
  const fit = STANDARD_LEASES.filter((s) => s <= maxLeaseSeconds);
  return fit.includes(maxLeaseSeconds) || fit.length === 3 ? fit : [...fit, maxLeaseSeconds].slice(-3);
}

export class LeaseStore {
  readonly path: string;
  private leases: Lease[] = [];

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.path = join(stateDir, 'leases.json');
    this.load();
  }

  private load(): void {
    try {
      const file = readStateJson(this.path, { maxBytes: MAX_LEASE_FILE_BYTES }, (json) => parse(fileSchema, json, 'leases'));
      if (!file) return; // no file yet
      this.leases = file.leases;
    } catch (e) {
      // Unsafe (symlink, not ours, group/world-writable, too big) or invalid: set it aside for the
      // operator; honour nothing from it.
      this.log('lease_file_invalid', { path: this.path, cause: e instanceof Error ? e.message : 'unreadable' });
      try {
        renameSync(this.path, `${this.path}.invalid`);
      } catch {
        /* read-only state dir: it stays, and stays unused */
      }
      this.leases = [];
    }
  }

  /** Atomic (state-file.ts); throws when it cannot save. */
  private save(): void {
    writeStateFileAtomic(this.path, JSON.stringify({ v: 1, leases: this.leases }));
  }

  private prune(now: number): void {
    this.leases = this.leases.filter((l) => l.expires > now);
  }

  /** Record a lease a phone granted; throws if it cannot be saved (the caller then grants none). */
  grant(l: Omit<Lease, 'id' | 'granted' | 'expires'>, seconds: number, now = Date.now()): Lease {
    if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_LEASE_SECONDS) throw new RangeError('lease seconds');
    const t = Math.floor(now / 1000);
    this.prune(t);
    const lease: Lease = { id: toB64url(nodeCrypto.randomBytes(16)), ...l, granted: t, expires: t + seconds };
    // One lease per user, service, key and device: a new approval replaces the old.
    this.leases = this.leases.filter((x) => !(x.user === l.user && x.service === l.service && x.keyFp === l.keyFp && x.deviceId === l.deviceId));
    this.leases.push(lease);
    while (this.leases.length > MAX_LEASES) this.leases.shift();
    this.save();
    return lease;
  }

  /**
   * A live lease for this user and service on one of the keys sshd verified, from a device
   * still enrolled (checked now, from the devices file as a login reads it).
   */
  find(user: string, service: string, keyFps: readonly string[], enrolledDeviceIds: readonly string[], now = Date.now()): Lease | undefined {
    const t = Math.floor(now / 1000);
    return this.leases.find(
      (l) => l.expires > t && l.user === user && l.service === service && keyFps.includes(l.keyFp) && enrolledDeviceIds.includes(l.deviceId),
    );
  }

  list(user?: string, now = Date.now()): Lease[] {
    const t = Math.floor(now / 1000);
    return this.leases.filter((l) => l.expires > t && (user === undefined || l.user === user));
  }

  /** End the leases that match; returns how many. */
  revoke(match: (l: Lease) => boolean): number {
    const before = this.leases.length;
    this.leases = this.leases.filter((l) => !match(l));
    const n = before - this.leases.length;
    if (n > 0) this.save();
    return n;
  }
}

/** How far a phone's signed revoke time may be from the host's clock; older requests are refused. */
export const PHONE_REVOKE_WINDOW_MS = 120_000;
/** Revoke requests remembered inside the window at most (replay cache); beyond, new ones wait. */
const PHONE_REVOKES_REMEMBERED = 10_000;

export interface PhoneRevokeDeps {
  leases: LeaseStore;
  hostId: string;
  /**
   * The public key of `deviceId` as enrolled for `user` now (the agent's devices-file rules),
   * or undefined when that device is not enrolled for that user (or the file cannot be read).
   */
  devicePub(user: string, deviceId: string): Promise<Uint8Array | undefined>;
  /** The host key's signature: every answer that ends (or finds nothing to end) is signed (leaseRevokeAckBytes). */
  sign(message: Uint8Array): Uint8Array;
  log: Logger;
}

/**
 * A phone ends its own leases through the relay (event revokeLeases). The relay is not trusted:
 * the request must carry the device's signature over leaseRevokeBytes, verified with the key
 * enrolled for the lease's user, and it ends only that device's leases of users it is still
 * enrolled for. Replays: a request is good for PHONE_REVOKE_WINDOW_MS either side of its signed
 * time, and each one is served once inside that window (a replayed "all" must not end a lease
 * granted after it), and a repeat gets the first answer again. A forged or replayed request
 * changes nothing.
 */
export class PhoneLeaseRevokes {
  /** Requests served, by their signed fields: when they leave the window (ms), and the answer given (none yet: ending them failed). */
  private readonly served = new Map<string, { until: number; ack?: LeaseRevokeAck }>();

  constructor(private readonly deps: PhoneRevokeDeps) {}

  async handle(msg: LeaseRevokeMessage, now = Date.now()): Promise<LeaseRevokeAck> {
    const { deps } = this;
    // The count, signed for exactly this request (its fields and the phone's signature of them): the
    // relay cannot answer "ended" for one it dropped, nor "none" with an answer to another request.
    const answer = (revoked: number): LeaseRevokeAck => ({ ok: true, revoked, sig: toB64url(deps.sign(leaseRevokeAckBytes(msg, revoked))) });
    if (msg.hostId !== deps.hostId) return { ok: false, code: 'QRA_ERR_INVALID_INPUT', message: 'this request names another host' };
    if (Math.abs(now - msg.time) > PHONE_REVOKE_WINDOW_MS) {
      return { ok: false, code: 'QRA_ERR_EXPIRED', message: "the request is over 2 minutes old or the phone's clock is off; set the clock and try again" };
    }
    for (const [k, s] of this.served) if (s.until < now) this.served.delete(k);
    const key = `${msg.deviceId} ${msg.leaseId} ${msg.time}`;
    // A repeat (the phone retrying after a lost answer, or a relay replaying it) ends nothing more and
    // gets the first answer again: a retry of "ended 2" must not read "none". Checked before the key
    // (the leases it ended are gone; the answer is the one already given for these fields, which the
    // relay carried) and again after the lookups below, for a repeat that came in while they ran.
    const repeated = (): LeaseRevokeAck | undefined => {
      const first = this.served.get(key);
      if (!first) return undefined;
      deps.log('leases_revoke_rejected', { by: 'phone', device: msg.deviceId, cause: 'repeated request' });
      return first.ack ?? answer(0);
    };
    const early = repeated();
    if (early) return early;
    const mine = (l: Lease) => l.deviceId === msg.deviceId && (msg.leaseId === '*' || l.id === msg.leaseId);
    const users = [...new Set(deps.leases.list().filter(mine).map((l) => l.user))];
    const enrolledFor = new Set<string>();
    let pub: Uint8Array | undefined;
    for (const user of users) {
      const p = await deps.devicePub(user, msg.deviceId);
      if (p) {
        enrolledFor.add(user);
        pub ??= p;
      }
    }
    // No lease of this device for a user it is enrolled for: nothing it could end, and no key to check
    // the request with. The signed 0 names the request's own signature, which nobody but the phone can
    // make for a real request: a relay that asks with fields of a time ahead and any signature gets an
    // answer that verifies for no request the phone sends (leaseRevokeAckBytes v2).
    if (!pub) return answer(0);
    if (!nodeCrypto.ed25519Verify(pub, leaseRevokeBytes(msg), fromB64url(msg.sig, 64))) {
      deps.log('leases_revoke_rejected', { by: 'phone', device: msg.deviceId, cause: 'bad signature' });
      return { ok: false, code: 'QRA_ERR_SIGNATURE', message: 'the lease revoke signature does not verify' };
    }
    // No await from here on: the first of two deliveries to get here ends the leases, the other repeats its count.
    const late = repeated();
    if (late) return late;
    if (this.served.size >= PHONE_REVOKES_REMEMBERED) {
      return { ok: false, code: 'QRA_ERR_RATE_LIMITED', message: 'too many lease revokes in the last minutes; wait two minutes and try again' };
    }
    // Served before the leases end: a request whose save fails is not served twice either.
    const served: { until: number; ack?: LeaseRevokeAck } = { until: msg.time + PHONE_REVOKE_WINDOW_MS };
    this.served.set(key, served);
    const n = deps.leases.revoke((l) => mine(l) && enrolledFor.has(l.user));
    served.ack = answer(n);
    deps.log('leases_revoked', { by: 'phone', device: msg.deviceId, id: msg.leaseId === '*' ? '*' : msg.leaseId.slice(0, 8), count: n });
    return served.ack;
  }
}
