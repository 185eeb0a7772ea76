/**
 * The phone's protocol steps, written once for the app (noble) and the headless phone
 * (sodium): check a login context against the host key from enrollment, and build the signed
 * decision and enrollment messages. Transport (Socket.IO) stays with each caller.
 */
import { enrollFingerprint, tokenIdOf } from './codes.js';
import type { QrCrypto } from './crypto.js';
import { fromB64url, toB64url } from './encoding.js';
import { QrauthError } from './errors.js';
import { enrollAck, type DecisionMessage, type EnrollAck, type EnrollMessage, type LeaseRevokeMessage, type SignedContext } from './events.js';
import { keyId } from './ids.js';
import { normaliseRelayUrl, type EnrollPayload, type LoginPayload } from './payloads.js';
import type { PasskeyInfo } from './webauthn.js';
import { contextBytes, decisionBytes, leaseRevokeAckBytes, leaseRevokeBytes, enrollAckBytes, enrollBytes, enrollOutcomeBytes, type Decision, type EnrollOutcome } from './signed.js';
import { parse } from './validate.js';

/**
 * Accept a context only if it is the one asked for, signed by the host key the phone got at
 * enrollment, and not expired. Throws QRA_ERR_SIGNATURE or QRA_ERR_EXPIRED.
 */
export function verifyLoginContext(
  crypto: QrCrypto,
  ctx: SignedContext,
  expected: { hostId: string; sid: string; hostPub: Uint8Array; hostname: string },
  now: number = Date.now(),
): SignedContext {
  if (ctx.hostId !== expected.hostId || ctx.sid !== expected.sid) {
    throw new QrauthError('QRA_ERR_SIGNATURE', 'the relay returned the details of another login; do not approve');
  }
  const forged = new QrauthError('QRA_ERR_SIGNATURE', `these login details are not signed by ${expected.hostname}; do not trust them`);
  let sig: Uint8Array;
  try {
    sig = fromB64url(ctx.sig, 64);
  } catch {
    throw forged;
  }
  if (!crypto.ed25519Verify(expected.hostPub, contextBytes(ctx), sig)) throw forged;
  if (ctx.exp * 1000 <= now) throw new QrauthError('QRA_ERR_EXPIRED', 'this login has expired; start the login again');
  return ctx;
}

/** The signed approve/deny for a scanned login, over the QR's nonce and the verified context's user. */
export function signDecision(
  crypto: QrCrypto,
  seed: Uint8Array,
  deviceId: string,
  login: LoginPayload,
  ctx: SignedContext,
  decision: Decision,
  time: number = Date.now(),
  leaseSeconds?: number,
): DecisionMessage {
  const { hostId, sid, nonce } = login;
  let lease: { seconds: number; keyFp: string } | undefined;
  if (leaseSeconds !== undefined) {
    // Only what the host offered in the context the phone verified, over the key shown.
    if (decision !== 'approve' || ctx.keyFp === undefined || !(ctx.leaseSeconds ?? []).includes(leaseSeconds)) {
      throw new QrauthError('QRA_ERR_LEASE', 'this host did not offer that approval period for this login');
    }
    lease = { seconds: leaseSeconds, keyFp: ctx.keyFp };
  }
  const sig = crypto.ed25519Sign(seed, decisionBytes({ hostId, sid, nonce, user: ctx.user, decision, time, deviceId, lease }));
  return { hostId, sid, deviceId, decision, time, ...(lease ? { lease } : {}), sig: toB64url(sig) };
}

/** The signed request to end this phone's lease(s) on a host ('*': all of them). */
export function signLeaseRevoke(
  crypto: QrCrypto,
  seed: Uint8Array,
  deviceId: string,
  hostId: string,
  leaseId: string,
  time: number = Date.now(),
): LeaseRevokeMessage {
  const sig = crypto.ed25519Sign(seed, leaseRevokeBytes({ hostId, deviceId, leaseId, time }));
  return { hostId, deviceId, leaseId, time, sig: toB64url(sig) };
}

/**
 * What the host's answer to a lease revoke proves: 'ended' with the count when the host signed it
 * for exactly this request; 'unconfirmed' when it carries no signature (a host from before it, or
 * a relay that dropped the request and answered itself: the phone cannot tell which). A
 * signature that does not verify is a relay that changed the answer: QRA_ERR_SIGNATURE.
 */
export function leaseRevokeResult(
  crypto: QrCrypto,
  hostPub: Uint8Array,
  sent: LeaseRevokeMessage,
  ack: { revoked: number; sig?: string },
): { state: 'ended'; revoked: number } | { state: 'unconfirmed' } {
  if (ack.sig === undefined) return { state: 'unconfirmed' };
  const changed = new QrauthError('QRA_ERR_SIGNATURE', "the answer is not the host's: a relay changed it");
  let sig: Uint8Array;
  try {
    sig = fromB64url(ack.sig, 64);
  } catch {
    throw changed;
  }
  if (keyId(crypto, hostPub) !== sent.hostId || !crypto.ed25519Verify(hostPub, leaseRevokeAckBytes(sent, ack.revoked), sig)) throw changed;
  return { state: 'ended', revoked: ack.revoked };
}

/** The signed enrollment request (bound to the token, which is not in it) and the fingerprint to show. */
export function signEnrollment(
  crypto: QrCrypto,
  seed: Uint8Array,
  /** `passkey`: the WebAuthn credential the phone made for this enrollment, if it could make one. */
  device: { publicKey: string; name: string; passkey?: PasskeyInfo | undefined },
  offer: EnrollPayload,
  time: number = Date.now(),
): { msg: EnrollMessage; hostId: string; fingerprint: string } {
  const hostId = keyId(crypto, offer.hostPub);
  const tokenId = tokenIdOf(crypto, offer.token);
  const passkey = device.passkey;
  const sig = crypto.ed25519Sign(seed, enrollBytes({ hostId, tokenId, token: offer.token, devicePub: device.publicKey, deviceName: device.name, time, passkey }));
  const fingerprint = enrollFingerprint(crypto, offer.hostPub, fromB64url(device.publicKey, 32), offer.token, passkey);
  const msg: EnrollMessage = { hostId, tokenId, devicePub: device.publicKey, deviceName: device.name, time, ...(passkey ? { passkey } : {}), sig: toB64url(sig) };
  return { msg, hostId, fingerprint };
}

/** What the phone says when an acceptance does not carry the host's signature. */
export const ENROLL_ACK_CHANGED =
  "the relay changed the host's answer; nothing was saved. Type n on the terminal and run qrauth enroll again (through another relay if this happens again)";

/**
 * The host's answer to `sent`, as the relay delivered it. A refusal comes back as is (nothing to
 * save). An acceptance counts only when the host key from the enrollment QR signed this
 * enrollment (tokenId), this phone's key, and the name and relay URL to remember: a relay that
 * made the acceptance up or changed a field gets QRA_ERR_SIGNATURE, and the caller saves nothing.
 * On success the relay URL is returned in the spelling phones store.
 */
export function verifyEnrollAck(
  crypto: QrCrypto,
  raw: unknown,
  sent: Pick<EnrollMessage, 'hostId' | 'tokenId' | 'devicePub'>,
  hostPub: Uint8Array,
): EnrollAck {
  const refused = typeof raw === 'object' && raw !== null && (raw as { ok?: unknown }).ok === false;
  if (refused) {
    try {
      return parse(enrollAck, raw, 'enroll answer');
    } catch (cause) {
      throw new QrauthError('QRA_ERR_INVALID_INPUT', `the relay sent an invalid enroll answer: ${(cause as Error).message}`, { cause });
    }
  }
  const changed = new QrauthError('QRA_ERR_SIGNATURE', ENROLL_ACK_CHANGED);
  let ack: EnrollAck;
  let sig: Uint8Array;
  try {
    ack = parse(enrollAck, raw, 'enroll answer');
    if (!ack.ok) throw changed;
    sig = fromB64url(ack.sig, 64);
  } catch {
    throw changed;
  }
  const hostId = keyId(crypto, hostPub);
  const signed = enrollAckBytes({
    hostId,
    tokenId: sent.tokenId,
    devicePub: sent.devicePub,
    hostname: ack.hostname,
    relayUrl: ack.relayUrl,
    ...(ack.fallbackRelayUrls ? { fallbackRelayUrls: ack.fallbackRelayUrls } : {}),
  });
  if (hostId !== sent.hostId || !crypto.ed25519Verify(hostPub, signed, sig)) throw changed;
  let relayUrl: string;
  let fallbackRelayUrls: string[];
  try {
    relayUrl = normaliseRelayUrl(ack.relayUrl);
    fallbackRelayUrls = (ack.fallbackRelayUrls ?? []).map(normaliseRelayUrl);
  } catch (cause) {
    throw new QrauthError('QRA_ERR_ENROLL', `${ack.hostname} answered with a relay URL that is not a URL; nothing was saved. Check relayUrl in /etc/qrauth/agent.json on that host`, { cause });
  }
  return { ...ack, relayUrl, ...(fallbackRelayUrls.length > 0 ? { fallbackRelayUrls } : {}) };
}

/** What the phone says when a final enrollment outcome does not carry the host's signature. */
export const ENROLL_OUTCOME_CHANGED =
  "the relay changed the terminal's answer; nothing was saved. Check the terminal: if it says the phone was enrolled, run qrauth revoke there and enroll again";

/**
 * The terminal's answer carried by a verified acceptance (verifyEnrollAck's result) for `sent`:
 * 'pending' until the person answers; 'confirmed' or 'refused' only with the host's signature
 * over this enrollment of this phone (QRA_ERR_SIGNATURE otherwise, so a relay cannot turn a
 * refusal or silence into "confirmed"). undefined: a host from before outcomes were reported.
 */
export function enrollOutcomeOf(
  crypto: QrCrypto,
  ack: EnrollAck,
  sent: Pick<EnrollMessage, 'hostId' | 'tokenId' | 'devicePub'>,
  hostPub: Uint8Array,
): EnrollOutcome | undefined {
  if (!ack.ok || ack.outcome === undefined) return undefined;
  if (ack.outcome === 'pending') return 'pending';
  const changed = new QrauthError('QRA_ERR_SIGNATURE', ENROLL_OUTCOME_CHANGED);
  if (ack.outcomeSig === undefined) throw changed;
  let sig: Uint8Array;
  try {
    sig = fromB64url(ack.outcomeSig, 64);
  } catch {
    throw changed;
  }
  const hostId = keyId(crypto, hostPub);
  const signed = enrollOutcomeBytes({ hostId, tokenId: sent.tokenId, devicePub: sent.devicePub, outcome: ack.outcome });
  if (hostId !== sent.hostId || !crypto.ed25519Verify(hostPub, signed, sig)) throw changed;
  return ack.outcome;
}
