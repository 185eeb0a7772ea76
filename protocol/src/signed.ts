/**
 * The canonical byte strings that are signed. Each starts with a label naming what it is
 * (domain separation: a signature for one purpose can never be replayed as another), then
 * every field as u32be length + bytes, so no two field lists encode to the same bytes.
 */
import { concatBytes, utf8 } from './encoding.js';
import type { PasskeyInfo } from './webauthn.js';

export const LABELS = {
  context: 'qrauth-context-v1',
  contextLease: 'qrauth-context-v2',
  contextSource: 'qrauth-context-v3',
  approve: 'qrauth-approve-v1',
  approveLease: 'qrauth-approve-v2',
  leaseRevoke: 'qrauth-lease-revoke-v1',
  leaseRevokeAck: 'qrauth-lease-revoke-ack-v2',
  hostAuth: 'qrauth-host-auth-v1',
  deviceAuth: 'qrauth-device-auth-v1',
  hostAuthV2: 'qrauth-host-auth-v2',
  deviceAuthV2: 'qrauth-device-auth-v2',
  enroll: 'qrauth-enroll-v1',
  enrollPasskey: 'qrauth-enroll-v2',
  enrollAck: 'qrauth-enroll-ack-v1',
  enrollAckRelays: 'qrauth-enroll-ack-v2',
  enrollOutcome: 'qrauth-enroll-outcome-v1',
  enrollFingerprint: 'qrauth-enroll-fp-v2',
  enrollFingerprintPasskey: 'qrauth-enroll-fp-v3',
  offlineKey: 'qrauth-offline-key-v1',
  offlineCode: 'offline-v1',
} as const;

export function canonical(label: string, fields: ReadonlyArray<string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [utf8(label), new Uint8Array([0])];
  for (const f of fields) {
    const b = typeof f === 'string' ? utf8(f) : f;
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length);
    parts.push(len, b);
  }
  return concatBytes(...parts);
}

/** What the host signs about a login, shown on the phone. Times are unix seconds. */
export interface LoginContext {
  hostId: string;
  sid: string;
  user: string;
  hostname: string;
  rhost: string;
  service: string;
  iat: number;
  exp: number;
  /**
   * The client's public key as sshd verified it (SHA256:… as `ssh-keygen -lf` prints) and the
   * lease durations in seconds this host allows for it, shortest first (docs/protocol.md §leases).
   * Both absent: no lease is offered, and the bytes are v1's.
   */
  keyFp?: string;
  leaseSeconds?: readonly number[];
  /**
   * What the host knows of the source address (docs/protocol.md §context): its reverse name,
   * only when that name resolves back to the address (forward-confirmed), and whether this user
   * has had no successful login from this address before. Both absent: v1's or v2's bytes.
   */
  rhostName?: string;
  firstFromAddress?: boolean;
}

export function contextBytes(c: LoginContext): Uint8Array {
  const v1 = [c.hostId, c.sid, c.user, c.hostname, c.rhost, c.service, String(c.iat), String(c.exp)];
  const offered = c.leaseSeconds ?? [];
  const lease = [c.keyFp ?? '', String(offered.length), ...offered.map(String)];
  if (c.rhostName !== undefined || c.firstFromAddress !== undefined) {
    // A label of its own, so neither fact can be cut off to pass the rest as v1 or v2; '' is
    // "not known", distinct from '0' (seen before) and '1' (first time).
    const first = c.firstFromAddress === undefined ? '' : c.firstFromAddress ? '1' : '0';
    return canonical(LABELS.contextSource, [...v1, ...lease, c.rhostName ?? '', first]);
  }
  if (c.keyFp === undefined && c.leaseSeconds === undefined) return canonical(LABELS.context, v1);
  // A label of its own: a v1 signature can never be read as an offer, nor an offer cut back to v1.
  return canonical(LABELS.contextLease, [...v1, ...lease]);
}

export type Decision = 'approve' | 'deny';

/** What the phone signs to approve or deny. `nonce` is the secret from the QR; `time` is unix ms. */
export interface DecisionFields {
  hostId: string;
  sid: string;
  nonce: Uint8Array;
  user: string;
  decision: Decision;
  time: number;
  deviceId: string;
  /** Approve for this long from this key (one of the context's leaseSeconds, over its keyFp). */
  lease?: { seconds: number; keyFp: string };
}

export function decisionBytes(d: DecisionFields): Uint8Array {
  const v1 = [d.hostId, d.sid, d.nonce, d.user, d.decision, String(d.time), d.deviceId];
  if (d.lease === undefined) return canonical(LABELS.approve, v1);
  return canonical(LABELS.approveLease, [...v1, String(d.lease.seconds), d.lease.keyFp]);
}

/**
 * What a phone signs to end its own leases on a host: one (leaseId) or all of them ('*').
 * The agent checks the device is the lease's device; the relay only routes it.
 */
export interface LeaseRevokeFields {
  hostId: string;
  deviceId: string;
  leaseId: string;
  time: number;
}

export function leaseRevokeBytes(r: LeaseRevokeFields): Uint8Array {
  return canonical(LABELS.leaseRevoke, [r.hostId, r.deviceId, r.leaseId, String(r.time)]);
}

/**
 * What the host signs to answer a phone's lease revoke: the request's fields, the phone's own
 * signature of them, and how many leases it ended. The relay carries the answer and could
 * otherwise report "ended" for a request it dropped, while a stolen SSH key kept its lease. The
 * phone's signature is in it because the host answers (with 0) requests it has no key to check,
 * from a phone with no lease there: without it a relay could have such answers signed for times
 * ahead (any signature will do) and show one to the phone's real request after a lease began (v1).
 */
export function leaseRevokeAckBytes(r: LeaseRevokeFields & { sig: string }, revoked: number): Uint8Array {
  return canonical(LABELS.leaseRevokeAck, [r.hostId, r.deviceId, r.leaseId, String(r.time), r.sig, String(revoked)]);
}

/**
 * Socket.IO handshake proof for a host or a device: signs its id, a time (unix ms), a fresh nonce
 * and (v2) the origin of the relay it is for; without `relay`, v1.
 */
export function authBytes(role: 'host' | 'device', id: string, time: number, nonce: string, relay?: string): Uint8Array {
  if (relay === undefined) return canonical(role === 'host' ? LABELS.hostAuth : LABELS.deviceAuth, [id, String(time), nonce]);
  return canonical(role === 'host' ? LABELS.hostAuthV2 : LABELS.deviceAuthV2, [id, String(time), nonce, relay]);
}

/**
 * What the phone signs to enroll. The token itself is bound in but never sent: the relay sees
 * only tokenId, so it cannot produce this signature for a key of its own.
 */
export interface EnrollFields {
  hostId: string;
  tokenId: string;
  token: Uint8Array;
  devicePub: string;
  deviceName: string;
  time: number;
  /**
   * The phone's passkey (webauthn.ts PasskeyInfo), made at enrollment next to the device key.
   * Absent: signed as v1, the bytes phones without passkeys always sent.
   */
  passkey?: PasskeyInfo | undefined;
}

export function enrollBytes(e: EnrollFields): Uint8Array {
  const v1 = [e.hostId, e.tokenId, e.token, e.devicePub, e.deviceName, String(e.time)];
  if (e.passkey === undefined) return canonical(LABELS.enroll, v1);
  // A label of its own: a relay cannot strip the passkey and pass the signature off as v1's.
  const p = e.passkey;
  return canonical(LABELS.enrollPasskey, [...v1, p.credentialId, p.publicKey, p.origin, p.rpId]);
}

/**
 * What the host signs when it accepts an enrollment: the name and relay URL the phone will
 * remember. The phone checks it with the host key from the enrollment QR before it saves
 * anything, so a relay can neither fake the acceptance nor change what the phone remembers;
 * tokenId and devicePub bind it to this enrollment of this phone (no replay onto another).
 */
export interface EnrollAckFields {
  hostId: string;
  tokenId: string;
  devicePub: string;
  hostname: string;
  relayUrl: string;
  /**
   * Further relays of the host, in order of preference, that the phone tries when `relayUrl`
   * cannot be reached. Absent or empty: signed as v1, the bytes hosts with one relay always sent.
   */
  fallbackRelayUrls?: readonly string[];
}

export function enrollAckBytes(a: EnrollAckFields): Uint8Array {
  const v1 = [a.hostId, a.tokenId, a.devicePub, a.hostname, a.relayUrl];
  const fallbacks = a.fallbackRelayUrls ?? [];
  if (fallbacks.length === 0) return canonical(LABELS.enrollAck, v1);
  // A label of its own: a v1 signature can never be read as a list, nor a list cut back to v1.
  return canonical(LABELS.enrollAckRelays, [...v1, String(fallbacks.length), ...fallbacks]);
}

/** The terminal's answer to an enrollment, as the phone learns it (see enrollOutcomeBytes). */
export type EnrollOutcome = 'pending' | 'confirmed' | 'refused';

export interface EnrollOutcomeFields {
  hostId: string;
  tokenId: string;
  devicePub: string;
  outcome: Exclude<EnrollOutcome, 'pending'>;
}

/**
 * What the host signs once the person answered at the terminal (`y`: confirmed; anything else,
 * Ctrl-C or a devices file that could not be written: refused). The phone trusts the host only
 * on a confirmation the host key signed for this enrollment of this phone: a relay can withhold
 * the answer but cannot make one up.
 */
export function enrollOutcomeBytes(o: EnrollOutcomeFields): Uint8Array {
  return canonical(LABELS.enrollOutcome, [o.hostId, o.tokenId, o.devicePub, o.outcome]);
}
