/**
 * The canonical byte strings that are signed. Each starts with a label naming what it is
 * (domain separation: a signature for one purpose can never be replayed as another), then
 * every field as u32be length + bytes, so no two field lists encode to the same bytes.
 */
import { concatBytes, utf8 } from './encoding.js';

export const LABELS = {
  context: 'qrauth-context-v1',
  approve: 'qrauth-approve-v1',
  hostAuth: 'qrauth-host-auth-v1',
  deviceAuth: 'qrauth-device-auth-v1',
  enroll: 'qrauth-enroll-v1',
  enrollAck: 'qrauth-enroll-ack-v1',
  enrollOutcome: 'qrauth-enroll-outcome-v1',
  enrollFingerprint: 'qrauth-enroll-fp-v2',
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
}

export function contextBytes(c: LoginContext): Uint8Array {
  return canonical(LABELS.context, [c.hostId, c.sid, c.user, c.hostname, c.rhost, c.service, String(c.iat), String(c.exp)]);
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
}

export function decisionBytes(d: DecisionFields): Uint8Array {
  return canonical(LABELS.approve, [d.hostId, d.sid, d.nonce, d.user, d.decision, String(d.time), d.deviceId]);
}

/** Socket.IO handshake proof for a host or a device: signs its id, a time (unix ms) and a fresh nonce. */
export function authBytes(role: 'host' | 'device', id: string, time: number, nonce: string): Uint8Array {
  return canonical(role === 'host' ? LABELS.hostAuth : LABELS.deviceAuth, [id, String(time), nonce]);
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
}

export function enrollBytes(e: EnrollFields): Uint8Array {
  return canonical(LABELS.enroll, [e.hostId, e.tokenId, e.token, e.devicePub, e.deviceName, String(e.time)]);
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
}

export function enrollAckBytes(a: EnrollAckFields): Uint8Array {
  return canonical(LABELS.enrollAck, [a.hostId, a.tokenId, a.devicePub, a.hostname, a.relayUrl]);
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
